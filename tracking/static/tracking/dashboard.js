/* The live dashboard: campaign.progress and queue.state over /ws/live/ (the platform's view),
   polling state.json when the socket cannot be opened, charts re-read every few seconds. */
(function () {
  "use strict";
  const initial = JSON.parse(document.getElementById("live-initial").textContent);
  const urls = JSON.parse(document.getElementById("live-urls").textContent);
  const rows = new Map();
  const tbody = document.querySelector("#live-campaigns tbody");
  const connection = document.getElementById("live-connection");
  const select = document.getElementById("chart-campaign");
  let pollTimer = null;
  let chartsTimer = null;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function bar(cls, percent, label) {
    const wrap = el("div", { class: "live-bar " + cls });
    const fill = el("span");
    fill.style.width = Math.max(0, Math.min(100, percent)) + "%";
    wrap.append(fill, el("em", {}, label));
    return wrap;
  }

  function setMode(mode, text) {
    connection.dataset.mode = mode;
    connection.textContent = text;
  }

  function campaignProgress(data) {
    let row = rows.get(data.campaign);
    const fresh = !row;
    if (fresh) {
      row = el("tr", { id: "campaign-" + data.campaign });
      rows.set(data.campaign, row);
      tbody.prepend(row);
      const option = el("option", { value: data.campaign }, data.name);
      select.append(option);
    }
    const recipients = data.counts.recipients;
    const sentPercent = recipients.total ? (100 * recipients.sent) / recipients.total : 0;
    row.className = data.status;
    row.dataset.status = data.status;
    row.dataset.phase = data.phase || "";
    row.replaceChildren();
    const name = el("td", { class: "live-name" });
    const link = el("a", { href: urls.campaign.replace("00000000-0000-0000-0000-000000000000", data.campaign) }, data.name);
    name.append(link, el("div", { class: "help" }, data.organization));
    const status = el("td", { class: "live-status" });
    status.append(el("span", { class: "live-pill " + data.status }, data.status));
    if (data.pause_cause) status.append(el("span", { class: "live-cause" }, "cause: " + data.pause_cause));
    const phase = el("td", { class: "live-phase" }, (data.phase || "—").replace("_", " "));
    const progress = el("td", { class: "live-progress" });
    progress.append(bar("overall", data.progress, data.progress + "% · phase " + data.phase_progress + "%"));
    const sent = el("td", { class: "live-sent" });
    sent.append(bar("sent", sentPercent, recipients.sent + " of " + recipients.total));
    const rate = el("td", { class: "live-rate" },
      data.phase === "outreach" ? data.send_rate_per_minute + "/min" : data.phase_rate_per_second + "/s");
    const eta = el("td", { class: "live-eta" }, data.status === "running" ? duration(data.eta_seconds) : "—");
    const counts = el("td", { class: "live-counts" },
      data.counts.leads + " → " + data.counts.verified + " → " + data.counts.enriched);
    row.append(name, status, phase, progress, sent, rate, eta, counts);
    if (!fresh) {
      row.classList.remove("live-flash");
      void row.offsetWidth;  // restart the animation
      row.classList.add("live-flash");
    }
    document.getElementById("live-empty").hidden = rows.size > 0;
    document.getElementById("live-updated").textContent = "· last update " + new Date().toLocaleTimeString();
  }

  function queueState(data) {
    const section = document.getElementById("live-queue");
    section.dataset.state = data.state;
    const pill = document.getElementById("live-queue-state");
    pill.className = "live-pill " + data.state;
    pill.textContent = "queue " + data.state;
    document.getElementById("live-queue-reason").textContent = data.reason ? "reason: " + data.reason : "";
    const list = document.getElementById("live-breakers");
    list.replaceChildren(...data.breakers.map((b) => {
      const item = el("li", { class: b.state, id: "breaker-" + b.service, "data-state": b.state },
        b.service + ": " + b.state + (b.failures ? " (" + b.failures + "/" + b.threshold + ")" : ""));
      if (b.last_error) item.title = b.last_error;
      return item;
    }));
  }

  function handle(message) {
    if (message.type === "campaign.progress") campaignProgress(message.data);
    else if (message.type === "queue.state") queueState(message.data);
  }

  function poll() {
    fetch(urls.state, { credentials: "same-origin" })
      .then((r) => r.json())
      .then((state) => { state.campaigns.forEach(handle); handle(state.queue); })
      .catch(() => setMode("polling", "polling (the last poll failed)"));
  }

  function startPolling() {
    if (pollTimer) return;
    setMode("polling", "polling every 3 s (WebSocket unavailable)");
    poll();
    pollTimer = setInterval(poll, 3000);
  }

  function connect() {
    const base = urls.websocket || ((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live/");
    let socket;
    try { socket = new WebSocket(base); } catch (e) { startPolling(); return; }
    let opened = false;
    socket.onopen = () => {
      opened = true;
      if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
      setMode("live", "live");
      socket.send(JSON.stringify({ action: "subscribe", platform: true }));
    };
    socket.onmessage = (event) => handle(JSON.parse(event.data));
    socket.onclose = () => {
      startPolling();
      setTimeout(connect, opened ? 2000 : 10000);  // try the socket again, keep polling meanwhile
    };
  }

  // --- charts ---
  const palette = { open: "#417690", click: "#2e8540", reply: "#8e44ad", bounce: "#c0392b", unsubscribe: "#e67e22" };
  const charts = {};
  function chart(id, config) {
    if (charts[id]) { charts[id].data = config.data; charts[id].update("none"); return; }
    charts[id] = new Chart(document.getElementById(id), config);
  }

  function drawCharts(data) {
    if (!data.campaign) return;
    document.getElementById("chart-bucket").textContent = "(by " + data.bucket + ")";
    const labels = data.timeline.labels.map((l) => new Date(l).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    chart("chart-timeline", {
      type: "bar",
      data: { labels, datasets: Object.entries(data.timeline.series).map(([kind, values]) => (
        { label: kind, data: values, backgroundColor: palette[kind] })) },
      options: { animation: false, responsive: true, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
    chart("chart-funnel", {
      type: "bar",
      data: { labels: data.funnel.map((s) => s.step), datasets: [{ label: "count", data: data.funnel.map((s) => s.value),
        backgroundColor: "#79aec8" }] },
      options: { indexAxis: "y", animation: false, plugins: { legend: { display: false } } },
    });
    chart("chart-opens", {
      type: "doughnut",
      data: { labels: ["human", "machine"], datasets: [{ data: [data.opens.human, data.opens.machine],
        backgroundColor: ["#2e8540", "#95a5a6"] }] },
      options: { animation: false },
    });
    document.getElementById("chart-opens").dataset.human = data.opens.human;
  }

  function loadCharts() {
    const campaign = select.value;
    fetch(urls.charts + (campaign ? "?campaign=" + encodeURIComponent(campaign) : ""), { credentials: "same-origin" })
      .then((r) => r.json()).then(drawCharts).catch(() => {});
  }

  initial.campaigns.slice().reverse().forEach(handle);
  handle(initial.queue);
  select.addEventListener("change", loadCharts);
  loadCharts();
  chartsTimer = setInterval(loadCharts, 5000);
  connect();
})();
