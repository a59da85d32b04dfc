"""Perplexity, lead enrichment: the same chat completions as OpenAI, at its own path."""

from .chat import ChatCompletionsClient


class PerplexityClient(ChatCompletionsClient):
    service = "perplexity"
    path = "/chat/completions"
    default_model = "sonar"
