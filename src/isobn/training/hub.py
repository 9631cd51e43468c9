"""A hub model's availability, checked before a study writes anything (one quiet request)."""

from __future__ import annotations

import logging

from isobn.errors import UserError
from isobn.training.model import looks_local, resolve_model_path


def check_model_available(name: str) -> None:
    """A model that loads without waiting on the network: `minilm` or a local directory
    (resolve_model_path), or a hub name in the Hugging Face cache or, online, on the hub (one
    quiet request, no retries). Else a one-line UserError: what `isobn study` checks before it
    writes anything, so that an offline machine is told at once, not after a minute of
    retries."""
    if name == "minilm" or looks_local(name):
        resolve_model_path(name)
        return
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
            f"({type(error).__name__}: {_first_line(error)}): check the name and the "
            f"network, or {local}"
        ) from None
    finally:
        hub_logger.setLevel(level)


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200].rstrip(".") if lines else type(error).__name__


__all__ = ["check_model_available"]
