"""Which provider served a call, from what a trace or a gateway log says about it, and the model
name the catalog prices that call under.

OpenAI-compatible SDKs report themselves as `openai` whatever they call, so the server's host
(together.ai behind the `openai` SDK: `api.together.xyz`) is asked first, then the provider name.
"""

from __future__ import annotations

from datetime import date

from pricing.catalog import Catalog

HOSTS = {
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral",
    "api.fireworks.ai": "fireworks",
    "api.x.ai": "x-ai",
    "api.cohere.com": "cohere",
    "api.cohere.ai": "cohere",
    "api.perplexity.ai": "perplexity",
    "api.cerebras.ai": "cerebras",
    "openrouter.ai": "openrouter",
    "generativelanguage.googleapis.com": "google",
}
"""API hosts and the catalog's provider id for each."""

NAMES = {
    "together": "together",
    "together_ai": "together",
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "azure": "azure",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "groq": "groq",
    "mistral_ai": "mistral",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "fireworks_ai": "fireworks",
    "cerebras": "cerebras",
    "openrouter": "openrouter",
}
"""Provider names as the GenAI conventions (`gen_ai.provider.name`, `gen_ai.system`) and LiteLLM
(`custom_llm_provider`) spell them, and the catalog's id for each."""


def provider_of(name: str | None, host: str | None = None) -> str | None:
    """The catalog's provider id for a call to `host` that names its provider `name`, if known."""
    if host:
        found = HOSTS.get(host.strip().lower().rstrip("."))
        if found:
            return found
    if name:
        return NAMES.get(name.strip().lower())
    return None


class ModelNames:
    """The ledger name of a model as a provider's call names it, remembered per (provider, model).

    The name stays as sent, unless the catalog would resolve it to another provider's model while
    the provider that served the call prices that very name: then it becomes `provider/model`, so a
    call to Groq's `deepseek-r1-distill-llama-70b` is costed at Groq's price, not DeepSeek's."""

    MAX_ENTRIES = 10_000

    def __init__(self, catalog: Catalog, today: date) -> None:
        self.catalog = catalog
        self.today = today
        self._memo: dict[tuple[str | None, str], str] = {}

    def __call__(self, provider: str | None, model: str) -> str:
        key = (provider, model)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= self.MAX_ENTRIES:
                self._memo.clear()
            found = self._memo[key] = self._resolve(provider, model)
        return found

    def _resolve(self, provider: str | None, model: str) -> str:
        if provider is None or model.startswith(provider + "/"):
            return model
        if self.catalog.price(provider, model, self.today) is None:
            return model  # the provider has no price under this name: leave it to the catalog's matching
        match = self.catalog.match(model)
        if match is not None and match.provider == provider:
            return model
        return f"{provider}/{model}"


_shared: ModelNames | None = None


def model_names(catalog: Catalog, today: date) -> ModelNames:
    """The shared ModelNames for `catalog` on `today` (a new one when either changed)."""
    global _shared
    names = _shared
    if names is None or names.catalog is not catalog or names.today != today:
        names = _shared = ModelNames(catalog, today)
    return names
