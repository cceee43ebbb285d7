"""Import the authors' released checkpoints (``grid.dat``, ``timit.dat``, ``crema.dat``).

The models of the paper's authors (GitHub DinoMan/speech-driven-animation, package ``sda``; the
files are linked from its README) are ``torch.save`` dicts: the settings ``img_size``,
``audio_rate``, ``video_rate``, ``audio_feat_len``, ``audio_feat_samples``, ``id_enc_dim``,
``rnn_gen_dim``, ``aud_enc_dim``, ``aux_latent``, ``sequential_noise``, the alignment target
``mean_face`` (68 points ``(x, y)`` in the crop's pixels) and three state dicts: ``encoder`` (the
audio CNN + 2-layer GRU, their ``RNN``), ``encoder_id`` (the image ``Encoder``) and ``generator``.
Their layers are this project's :class:`~speechanim.models.Generator` with ``unet_skips="authors"``
(sda/encoder_audio.py, sda/encoder_image.py, sda/img_generator.py, sda/rnn_audio.py; read, not
copied); :func:`convert` renames every tensor, reorders the first decoder layer's input channels
(their latent is ``[z_c, z_n, z_id]``, ours ``[z_id, z_c, z_n]``, sda/img_generator.py) and checks
every shape, naming the key of anything missing or misshapen.

The converted checkpoint also keeps how the authors prepare inputs (sda/sda.py ``VideoAnimator``),
and names its source (``source.format``, :func:`is_converted`); :class:`speechanim.animate.Animator`,
``speechanim animate`` and the DAG's ``pretrained:`` path (:mod:`speechanim.generate`) then run the
authors' pipeline, where this project's own models keep theirs:

* ``alignment``: the photo is aligned by a similarity transform of five stable points (68-point
  33, 36, 39, 42, 45: the subnasale and the eye corners; FaceMesh
  :data:`speechanim.align.STABLE_POINTS_68`) onto ``mean_face``'s, at ``img_size``;
* ``audio_scaling: "full_scale"``: samples as read (integers / their maximum; no DC removal, no
  peak normalisation), where this project's models hear peak-normalised audio;
* channels: an array's first channel (their ``audio[:, 0]``), a file's channels averaged (their
  pydub ``set_channels(1)``); this project's models average both;
* resampling: :func:`authors_resample`, ``scipy.signal.resample`` (FFT, over the whole recording) to
  ``int(samples * audio_rate / rate)`` samples; this project's models: polyphase (``resample_poly``,
  or ffmpeg for a file);
* ``audio_stride``: ``int(audio_rate / video_rate)`` samples between windows (truncated, so
  16 kHz at 30 fps works), the signal padded with ``(window - stride) // 2`` zeros before it and the
  rest after, and ``floor(samples / stride)`` frames;
* frames ``125 * G + 125`` (0 to 250, their ``VideoAnimator``'s output), where this project's
  models' are ``127.5 * (G + 1)`` (:func:`speechanim.generate.to_uint8`).

Loading reads tensors, plain values and numpy arrays only (``weights_only``): a ``.dat`` that holds
anything else is refused (see :mod:`speechanim.checkpoint`).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import (CheckpointError, check_finite_weights, check_fps, check_model_config, load_checkpoint,
                         model_config_dict, save_checkpoint)
from .fileio import refuse_clashing_paths
from .models import Generator, ModelConfig

__all__ = ["SETTINGS", "STABLE_68", "SOURCE_FORMAT", "SdaError", "is_converted", "authors_resample",
           "authors_file_audio", "model_config", "convert", "convert_file", "main"]

#: ``source.format`` of a converted checkpoint: what marks it as the authors' model.
SOURCE_FORMAT = "DinoMan/speech-driven-animation"

#: The settings every authors' checkpoint holds (sda/sda.py reads each with ``model_dict[...]``).
SETTINGS = ("img_size", "audio_rate", "video_rate", "audio_feat_len", "audio_feat_samples", "id_enc_dim",
            "rnn_gen_dim", "aud_enc_dim", "aux_latent", "sequential_noise", "mean_face")

#: The stable points of their alignment in the 68-point scheme (sda/sda.py ``stablePntsIDs``):
#: the bottom of the nose (33, subnasale), eye corners on the image's left (36 outer, 39 inner) and
#: right (42 inner, 45 outer); FaceMesh :data:`speechanim.align.STABLE_POINTS_68`, in the same order.
STABLE_68 = (33, 36, 39, 42, 45)


def is_converted(payload: dict[str, Any]) -> bool:
    """Whether a checkpoint's dict was converted from the authors' files (:func:`convert_file`)."""
    source = payload.get("source")
    return isinstance(source, dict) and source.get("format") == SOURCE_FORMAT


def authors_resample(samples: np.ndarray, rate: int, model_rate: int) -> np.ndarray:
    """Mono ``samples`` at ``rate`` -> float32 at ``model_rate`` as sda/sda.py resamples them:
    ``scipy.signal.resample`` (FFT over the whole signal, which it takes as periodic) to
    ``int(len * model_rate / rate)`` samples (truncated, so the frame count is theirs)."""
    from scipy.signal import resample  # imported here: scipy.signal costs ~0.8 s

    samples = np.asarray(samples, np.float64)
    if int(rate) != int(model_rate):
        samples = resample(samples, int(len(samples) * int(model_rate) / float(rate)))
    return samples.astype(np.float32)


def authors_file_audio(path: str | os.PathLike, model_rate: int) -> np.ndarray:
    """A file's first audio track as the authors read it, float32 at ``model_rate``: decoded at its own
    rate, its channels averaged (their pydub ``set_channels(1)``: ``(L + R) / 2``, where ffmpeg's own
    mono mix is ``(L + R) / sqrt(2)``, 3 dB louder), on their int16 scale (samples / 32767, where
    ffmpeg's floats are / 32768), then :func:`authors_resample`. The whole recording is held (the FFT
    needs it): 8 bytes a sample, about 200 MB for 10 minutes at 44.1 kHz."""
    from .media import MediaError, _check_exists, audio_layout, read_audio

    _check_exists(Path(path))
    layout = audio_layout(path)
    if layout is None:  # not media, or no audio track: read_audio's error says which
        read_audio(path, 16000)
        raise MediaError(f"{path}: has no audio track")
    rate, channels = layout  # channels None: a named layout (5.1, ...): ffmpeg's own mono mix
    samples = read_audio(path, rate, channels=channels or 1).astype(np.float64)
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    return authors_resample(mono * (32768.0 / 32767.0), rate, model_rate)


class SdaError(CheckpointError):
    """An authors' checkpoint that cannot be converted; the message names the file and the key."""


def _setting(d: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    if key not in d:
        raise SdaError(f"{path}: has no {key!r} (an authors' checkpoint holds {', '.join(SETTINGS)})")
    value = d[key]
    if kind is int and isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    if kind is float and isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if kind is bool and isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise SdaError(f"{path}: {key!r} must be a positive {kind.__name__}, got {value!r}")


def model_config(d: dict[str, Any], path: str | os.PathLike = "checkpoint") -> ModelConfig:
    """The :class:`ModelConfig` of the network an authors' checkpoint describes."""
    path = Path(path)
    size = d.get("img_size")
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, (int, np.integer)) for v in size)):
        raise SdaError(f"{path}: 'img_size' must be (height, width), got {size!r}")
    if not _setting(d, "sequential_noise", bool, path):
        raise SdaError(f"{path}: 'sequential_noise' is False (noise without its GRU): not supported; "
                       "the released GRID, TCD-TIMIT and CREMA-D models use True")
    rate = _setting(d, "audio_rate", int, path)
    window_s = _setting(d, "audio_feat_len", float, path)
    samples = _setting(d, "audio_feat_samples", int, path)
    if samples != int(window_s * rate) and samples != round(window_s * rate):
        raise SdaError(f"{path}: 'audio_feat_samples' {samples} is not audio_feat_len x audio_rate ({window_s} x {rate})")
    _setting(d, "video_rate", int, path)
    try:
        cfg = ModelConfig(image_size=(int(size[0]), int(size[1])), sample_rate=rate, audio_window_s=window_s,
                          id_dim=_setting(d, "id_enc_dim", int, path),
                          audio_feat_dim=_setting(d, "aud_enc_dim", int, path),
                          context_dim=_setting(d, "rnn_gen_dim", int, path), context_layers=2,
                          noise_dim=_setting(d, "aux_latent", int, path), unet_skips="authors")
    except ValueError as e:
        raise SdaError(f"{path}: its settings do not describe a network this project can build ({e})") from None
    try:  # bounded before the network is built (rnn_gen_dim 40000 asks for a GRU of tens of GB)
        return check_model_config(cfg, path, "its settings (as this project's model_config)")
    except CheckpointError as e:
        raise SdaError(str(e)) from None


def _key_map(cfg: ModelConfig, gen: Generator) -> dict[str, str]:
    """Our generator's state-dict key -> the authors' ``module.key`` (module: encoder, encoder_id, generator)."""
    names: dict[str, str] = {}
    audio = gen.context_encoder.audio_encoder.net
    convs = [i for i, m in enumerate(audio) if isinstance(m, torch.nn.Conv1d)]
    norms = [i for i, m in enumerate(audio) if isinstance(m, torch.nn.BatchNorm1d)]
    for j, i in enumerate(convs):
        for p in ("weight", "bias"):
            names[f"context_encoder.audio_encoder.net.{i}.{p}"] = f"encoder.encoder.cl.{j}.{p}"
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for j, i in enumerate(norms):
        for p in bn:
            names[f"context_encoder.audio_encoder.net.{i}.{p}"] = f"encoder.encoder.activations.{j}.0.{p}"
    for k in gen.context_encoder.rnn.state_dict():
        names[f"context_encoder.rnn.{k}"] = f"encoder.rnn.{k}"
    for j in range(len(gen.identity_encoder.layers)):
        names[f"identity_encoder.layers.{j}.0.weight"] = f"encoder_id.cl.{j}.0.weight"
        for p in bn:
            names[f"identity_encoder.layers.{j}.1.{p}"] = f"encoder_id.cl.{j}.1.{p}"
    names["identity_encoder.out.weight"] = f"encoder_id.cl.{len(gen.identity_encoder.layers)}.0.weight"
    for k in gen.noise_generator.rnn.state_dict():
        names[f"noise_generator.rnn.{k}"] = f"generator.rnn_noise.{k}"
    names["frame_decoder.project.0.weight"] = "generator.dcl.0.0.weight"
    for p in bn:
        names[f"frame_decoder.project.1.{p}"] = f"generator.dcl.0.1.{p}"
    for j in range(len(gen.frame_decoder.blocks)):
        ours, theirs = f"frame_decoder.blocks.{j}", f"generator.dcl.{j + 1}"
        names[f"{ours}.mix.0.weight"] = f"{theirs}.dcl1.weight"
        names[f"{ours}.up.0.weight"] = f"{theirs}.dcl2.weight"
        for p in bn:
            names[f"{ours}.mix.1.{p}"] = f"{theirs}.activation1.0.{p}"
            names[f"{ours}.up.1.{p}"] = f"{theirs}.activation2.0.{p}"
    names["frame_decoder.to_rgb.weight"] = f"generator.dcl.{len(gen.frame_decoder.blocks) + 1}.weight"
    return names


def _source_tensor(d: dict[str, Any], name: str, path: Path) -> torch.Tensor | None:
    module, key = name.split(".", 1)
    state = d.get(module)
    if not isinstance(state, dict):
        raise SdaError(f"{path}: has no {module!r} state dict")
    value = state.get(key)
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise SdaError(f"{path}: {name} is a {type(value).__name__}, not a tensor")
    return value


def convert(d: dict[str, Any], path: str | os.PathLike = "checkpoint") -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The :class:`ModelConfig` and generator state dict of an authors' checkpoint dict ``d``."""
    path = Path(path)
    cfg = model_config(d, path)
    gen = Generator(cfg)
    names = _key_map(cfg, gen)
    ours = gen.state_dict()
    if set(names) != set(ours):  # a layer of ours without a source, or the other way round: a bug here
        raise AssertionError(f"key map out of date: {sorted(set(ours) ^ set(names))[:5]}")
    state: dict[str, torch.Tensor] = {}
    for key, target in ours.items():
        source = _source_tensor(d, names[key], path)
        if source is None:
            if key.endswith("num_batches_tracked"):  # absent from older files; eval mode never reads it
                state[key] = torch.zeros_like(target)
                continue
            raise SdaError(f"{path}: missing tensor {names[key]} (expected shape {tuple(target.shape)})")
        if tuple(source.shape) != tuple(target.shape):
            raise SdaError(f"{path}: tensor {names[key]} has shape {tuple(source.shape)}, expected {tuple(target.shape)} "
                           f"for the settings the file gives")
        state[key] = source.detach().to(target.dtype).clone()
    check_finite_weights({names[k]: v for k, v in state.items()}, path, "the authors'")
    # their latent is [z_c, z_n, z_id] (sda/img_generator.py cat order); ours [z_id, z_c, z_n]
    w = state["frame_decoder.project.0.weight"]
    c, n = cfg.context_dim, cfg.noise_dim
    state["frame_decoder.project.0.weight"] = torch.cat([w[c + n:], w[:c], w[c:c + n]], 0).contiguous()
    used = set(names.values())
    for module in ("encoder", "encoder_id", "generator"):
        extra = sorted(f"{module}.{k}" for k in d[module] if f"{module}.{k}" not in used)
        if extra:
            raise SdaError(f"{path}: unexpected tensor {extra[0]} (not a layer of the authors' released networks)")
    return cfg, state


def _mean_face(d: dict[str, Any], cfg: ModelConfig, path: Path) -> list[list[float]]:
    face = np.asarray(d["mean_face"], np.float64)
    if face.ndim != 2 or face.shape[1] != 2 or face.shape[0] <= max(STABLE_68) or not np.isfinite(face).all():
        raise SdaError(f"{path}: 'mean_face' must be 68 finite (x, y) points, got shape {face.shape}")
    h, w = cfg.image_size
    stable = face[list(STABLE_68)]
    if (stable < -w).any() or (stable[:, 0] > 2 * w).any() or (stable[:, 1] > 2 * h).any():
        raise SdaError(f"{path}: 'mean_face' is not in the pixel coordinates of a {h}x{w} crop")
    return stable.tolist()


def convert_file(src: str | os.PathLike, out: str | os.PathLike, *, trust: bool = False) -> Path:
    """Convert an authors' ``.dat`` file into this project's checkpoint format at ``out``."""
    src, out = Path(src), Path(out)
    d = load_checkpoint(src, trust=trust)
    missing = [k for k in SETTINGS + ("encoder", "encoder_id", "generator") if k not in d]
    if missing:
        raise SdaError(f"{src}: not an authors' checkpoint: no {', '.join(repr(k) for k in missing)}")
    cfg, state = convert(d, src)
    rate, fps = int(d["audio_rate"]), int(d["video_rate"])
    with open(src, "rb") as f:  # streamed: the file is not held in memory twice
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    payload = {
        "model_config": model_config_dict(cfg),
        "generator": state,
        "variant": "sda",
        "dataset": src.stem,
        "fps": float(fps),
        # how VideoAnimator prepares inputs (sda/sda.py), followed by Animator for this checkpoint
        "alignment": {"scheme": "sda-68", "stable_points": _mean_face(d, cfg, src)},
        "audio_scaling": "full_scale",
        "audio_stride": rate // fps,
        "source": {"file": src.name, "sha256": digest, "format": SOURCE_FORMAT},  # is_converted reads it
    }
    check_fps(payload, src)
    return save_checkpoint(out, payload)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="speechanim import-sda", description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="the authors' checkpoint (grid.dat, timit.dat, crema.dat)")
    ap.add_argument("-o", "--out", required=True, type=Path, help="the checkpoint to write (.pt)")
    ap.add_argument("--trust-checkpoint", action="store_true",
                    help="unpickle a file that holds more than tensors, plain values and numpy arrays (it could run code)")
    args = ap.parse_args(argv)
    refuse_clashing_paths(ap, {"the .dat file": args.model}, {"-o": args.out})
    try:
        out = convert_file(args.model, args.out, trust=args.trust_checkpoint)
    except CheckpointError as e:
        print(f"speechanim import-sda: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
