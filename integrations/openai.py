"""OpenAI, lead enrichment: one personalisation line per lead (chat completions)."""

from .chat import ChatCompletionsClient


class OpenAIClient(ChatCompletionsClient):
    service = "openai"
    path = "/v1/chat/completions"
    default_model = "gpt-4o-mini"
