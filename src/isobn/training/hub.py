"""A hub model's availability, checked before anything loads it (one quiet request)."""

from __future__ import annotations

import logging

from isobn.errors import UserError, first_line


def check_hub_model(name: str) -> None:
    """A hub model name that loads without waiting on the network: in the Hugging Face cache
    or, online, on the hub (one quiet request, no retries). Else a one-line UserError at once,
    where transformers would spend a minute on retries and print each of them (an offline
    machine, a typo, a gated model). Called by training.pretrained.resolve_model_path for every
    name that is not `minilm` or a local path."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    local = "pass `minilm` or a local model directory"
    offline = getattr(constants, "is_offline_mode", lambda: constants.HF_HUB_OFFLINE)()
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # no retry warnings
    try:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
        if offline:
            raise UserError(
                f"model {name} is not in the Hugging Face cache and the hub is off "
                f"(HF_HUB_OFFLINE): download it once with a network connection "
                f"(hf download {name}), or {local}"
            )
        get_hf_file_metadata(hf_hub_url(name, "config.json"), timeout=10)
    except UserError:
        raise
    except Exception as error:  # a bad name, not found, gated, no network: not loadable
        raise UserError(
            f"model {name} is not in the Hugging Face cache and was not found on the hub "
            f"({type(error).__name__}: {first_line(error, 200)}): check the name and the "
            f"network, or {local}"
        ) from None
    finally:
        hub_logger.setLevel(level)


__all__ = ["check_hub_model"]
