# Read by gunicorn from the working directory (the image's /app, the repository root).
# Request lines up to 8190 bytes reach the app, which answers a URI over MAX_REQUEST_URI_LENGTH
# (4096) with a JSON 414 of its own; gunicorn's 414 is plain text.
limit_request_line = 8190
