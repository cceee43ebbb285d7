"""Importing the authors' released checkpoints (speechanim.sda, ``speechanim import-sda``).

No real ``.dat`` file exists here, so the tests build one the way the authors' code lays it out
(DinoMan/speech-driven-animation: sda/sda.py reads these keys; the state dicts' names and shapes
follow sda/encoder_audio.py, sda/rnn_audio.py, sda/encoder_image.py and sda/img_generator.py),
written out here by hand from those files' layer definitions, with small settings so that it is quick.
"""
from __future__ import annotations

import pickle
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch

from speechanim.animate import Animator
from speechanim.checkpoint import CheckpointError
from speechanim.cli import main
from speechanim.media import read_audio, read_video
from speechanim.models import Generator
from speechanim.sda import SdaError, convert_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A small model with the released files' layout: 128 x 96 frames would be 55M parameters; the
# layer pattern is the same at 64 x 48 (one fewer halving). Audio 0.2 s windows at 16 kHz (crema's rate).
SETTINGS = dict(img_size=(64, 48), audio_rate=16000, video_rate=25, audio_feat_len=0.2, audio_feat_samples=3200,
                id_enc_dim=12, rnn_gen_dim=16, aud_enc_dim=8, aux_latent=4, sequential_noise=True)


def _bn(prefix: str, c: int) -> dict[str, tuple]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def authors_shapes(s: dict) -> dict[str, OrderedDict]:
    """Key -> shape of the authors' three state dicts for settings ``s`` (their full width: 64 / 16 maps)."""
    k0 = int(0.005 * s["audio_rate"])  # encoder_audio.py: first kernel 5 ms, stride 1 ms; then strides 2,2,2,5
    enc = OrderedDict()
    convs = [(16, 1, k0), (32, 16, 4), (64, 32, 4), (128, 64, 4), (256, 128, 10), (s["aud_enc_dim"], 256, 5)]
    for i, shape in enumerate(convs):
        enc[f"encoder.cl.{i}.weight"], enc[f"encoder.cl.{i}.bias"] = shape, (shape[0],)
    for i, (c, _, _) in enumerate(convs[:-1]):
        enc.update(_bn(f"encoder.activations.{i}.0", c))
    h, a = s["rnn_gen_dim"], s["aud_enc_dim"]
    for layer, inp in ((0, a), (1, h)):  # rnn_audio.py: GRU(aud_enc_dim, rnn_gen_dim, 2)
        enc.update({f"rnn.weight_ih_l{layer}": (3 * h, inp), f"rnn.weight_hh_l{layer}": (3 * h, h),
                    f"rnn.bias_ih_l{layer}": (3 * h,), f"rnn.bias_hh_l{layer}": (3 * h,)})
    chans = [64, 128, 256, 512][: int(np.log2(max(s["img_size"]))) - 2]  # encoder_image.py
    ident = OrderedDict()
    prev = 3
    for i, c in enumerate(chans):
        ident[f"cl.{i}.0.weight"] = (c, prev, 4, 4)
        ident.update(_bn(f"cl.{i}.1", c))
        prev = c
    ident[f"cl.{len(chans)}.0.weight"] = (s["id_enc_dim"], prev, 4, 3)
    gen = OrderedDict()
    x = s["aux_latent"]
    gen.update({"rnn_noise.weight_ih_l0": (3 * x, x), "rnn_noise.weight_hh_l0": (3 * x, x),
                "rnn_noise.bias_ih_l0": (3 * x,), "rnn_noise.bias_hh_l0": (3 * x,)})
    top = chans[-1]
    gen["dcl.0.0.weight"] = (s["rnn_gen_dim"] + x + s["id_enc_dim"], top, 4, 3)
    gen.update(_bn("dcl.0.1", top))
    c = top
    for j in range(1, len(chans)):  # img_generator.py UnetBlock: [x, skip] -> 3x3 -> 4x4 stride 2
        gen[f"dcl.{j}.dcl1.weight"] = (2 * c, c, 3, 3)
        gen[f"dcl.{j}.dcl2.weight"] = (c, c // 2, 4, 4)
        gen.update(_bn(f"dcl.{j}.activation1.0", c))
        gen.update(_bn(f"dcl.{j}.activation2.0", c // 2))
        c //= 2
    gen[f"dcl.{len(chans)}.weight"] = (c, 3, 4, 4)
    return {"encoder": enc, "encoder_id": ident, "generator": gen}


def mean_face(size) -> np.ndarray:
    """68 points (x, y) in a crop of ``size``: the five stable ones the canonical face's, smaller
    and lower (so a photo aligned to it differs from one aligned to ours), the rest anywhere."""
    from speechanim.align import load_template

    face = np.random.default_rng(0).uniform([0, 0], [size[1], size[0]], (68, 2))
    stable = load_template(tuple(size)).stable
    centre = stable.mean(axis=0)
    face[[33, 36, 39, 42, 45]] = (stable - centre) * 0.8 + centre + [1.5, 4.0]
    return face


def fake_dat(path, *, constants: bool = False, drop: str | None = None, reshape: str | None = None, **overrides):
    """Write an authors'-format checkpoint: random weights (or each tensor the constant of its index)."""
    s = {**SETTINGS, **overrides}
    rng = torch.Generator().manual_seed(0)
    d: dict = dict(s)
    d["mean_face"] = mean_face(SETTINGS["img_size"])
    index = 0
    for module, shapes in authors_shapes(s).items():
        state = OrderedDict()
        for key, shape in shapes.items():
            index += 1
            name = f"{module}.{key}"
            if name == drop:
                continue
            if name == reshape:
                shape = (shape[0] + 1, *shape[1:])
            if key.endswith("num_batches_tracked"):
                state[key] = torch.tensor(7)
            elif key.endswith("running_var"):
                state[key] = torch.full(shape, float(index)) if constants else torch.rand(shape, generator=rng) + 0.5
            else:
                state[key] = torch.full(shape, float(index)) if constants else torch.randn(shape, generator=rng) * 0.1
        d[module] = state
    torch.save(d, path, _use_new_zipfile_serialization=False)  # the 2019 files predate torch's zip format
    return path


def test_every_tensor_lands_in_its_parameter(tmp_path):
    src = fake_dat(tmp_path / "grid.dat", constants=True)
    out = convert_file(src, tmp_path / "grid.pt")
    animator = Animator(out, device="cpu")
    ours = animator.generator.state_dict()
    index = {}
    n = 0
    for module, shapes in authors_shapes(SETTINGS).items():
        for key in shapes:
            n += 1
            index[f"{module}.{key}"] = float(n)

    def has(our_key, their_key):
        t = ours[our_key]
        assert t.numel() > 0 and torch.all(t == index[their_key]), (our_key, their_key)
    net = animator.generator.context_encoder.audio_encoder.net
    convs = [i for i, m in enumerate(net) if isinstance(m, torch.nn.Conv1d)]
    for j, i in enumerate(convs):
        has(f"context_encoder.audio_encoder.net.{i}.weight", f"encoder.encoder.cl.{j}.weight")
        has(f"context_encoder.audio_encoder.net.{i}.bias", f"encoder.encoder.cl.{j}.bias")
        if j < len(convs) - 1:
            has(f"context_encoder.audio_encoder.net.{i + 1}.running_var", f"encoder.encoder.activations.{j}.0.running_var")
    has("context_encoder.rnn.weight_hh_l1", "encoder.rnn.weight_hh_l1")
    has("identity_encoder.layers.0.0.weight", "encoder_id.cl.0.0.weight")
    has("identity_encoder.layers.2.1.bias", "encoder_id.cl.2.1.bias")
    has("identity_encoder.layers.3.0.weight", "encoder_id.cl.3.0.weight")
    has("identity_encoder.out.weight", "encoder_id.cl.4.0.weight")
    has("noise_generator.rnn.weight_ih_l0", "generator.rnn_noise.weight_ih_l0")
    has("frame_decoder.project.1.running_mean", "generator.dcl.0.1.running_mean")
    for j in range(3):
        has(f"frame_decoder.blocks.{j}.mix.0.weight", f"generator.dcl.{j + 1}.dcl1.weight")
        has(f"frame_decoder.blocks.{j}.up.0.weight", f"generator.dcl.{j + 1}.dcl2.weight")
        has(f"frame_decoder.blocks.{j}.mix.1.weight", f"generator.dcl.{j + 1}.activation1.0.weight")
        has(f"frame_decoder.blocks.{j}.up.1.running_var", f"generator.dcl.{j + 1}.activation2.0.running_var")
    has("frame_decoder.to_rgb.weight", "generator.dcl.4.weight")
    assert len(ours) == sum(len(v) for v in authors_shapes(SETTINGS).values())
    cfg = animator.cfg
    assert (cfg.image_size, cfg.sample_rate, cfg.audio_window_s, cfg.id_dim) == ((64, 48), 16000, 0.2, 12)
    assert (cfg.audio_feat_dim, cfg.context_dim, cfg.noise_dim, cfg.unet_skips) == (8, 16, 4, "authors")
    assert (animator.audio_scaling, animator.audio_stride, animator.frame_rule) == ("full_scale", 640, "floor")


def test_the_latent_is_reordered_to_ours(tmp_path):
    """Their decoder input is [z_c, z_n, z_id] (img_generator.py), ours [z_id, z_c, z_n]."""
    src = tmp_path / "grid.dat"
    fake_dat(src)
    d = torch.load(src, weights_only=False)
    w = d["generator"]["dcl.0.0.weight"]
    w.copy_(torch.arange(w.shape[0], dtype=torch.float32)[:, None, None, None].expand_as(w))
    torch.save(d, src)
    ours = Animator(convert_file(src, tmp_path / "grid.pt"), device="cpu").generator.frame_decoder.project[0].weight
    c, n, i = SETTINGS["rnn_gen_dim"], SETTINGS["aux_latent"], SETTINGS["id_enc_dim"]
    expected = list(range(c + n, c + n + i)) + list(range(c)) + list(range(c, c + n))
    assert ours[:, 0, 0, 0].tolist() == [float(v) for v in expected]


def _gru(x: torch.Tensor, state: dict, prefix: str, layer: int) -> torch.Tensor:
    """One GRU layer written out from the weights ``prefix.*_l{layer}`` of a state dict (PyTorch's gate
    order r, z, n; zero initial state): ``x (B, T, in)`` -> ``(B, T, H)``."""
    w_ih, w_hh = state[f"{prefix}.weight_ih_l{layer}"], state[f"{prefix}.weight_hh_l{layer}"]
    b_ih, b_hh = state[f"{prefix}.bias_ih_l{layer}"], state[f"{prefix}.bias_hh_l{layer}"]
    h = x.new_zeros(x.shape[0], w_hh.shape[1])
    outs = []
    for t in range(x.shape[1]):
        i_r, i_z, i_n = (x[:, t] @ w_ih.T + b_ih).chunk(3, 1)
        h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, 1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
        outs.append(h)
    return torch.stack(outs, 1)


def _batch_norm(x: torch.Tensor, state: dict, prefix: str) -> torch.Tensor:
    """Batch norm in eval mode (running statistics, eps 1e-5) from a state dict's ``prefix.*``."""
    return torch.nn.functional.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                                          state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5)


#: The authors' audio CNN at 16 kHz, 0.2 s (encoder_audio.py with init_kernel 5 ms, init_stride 1 ms):
#: strides 16, then the prime factors of the 200 steps left (2, 2, 2, 5; the last 5 is the full-length
#: conv); each padding ceil(p / 2) per side of utils.calculate_padding's total p = (ceil(L / s) - 1) s + k - L:
#: L 3200 -> p 64 (32 a side), 200 -> 2, 100 -> 2, 50 -> 2, 25 -> p 5 with k 10 (3 a side), leaving 5.
AUTHORS_AUDIO = [(16, 32), (2, 1), (2, 1), (2, 1), (5, 3)]


def authors_forward(d: dict, still: torch.Tensor, audio: torch.Tensor, noise: torch.Tensor,
                    audio_layers: list[tuple[int, int]] = AUTHORS_AUDIO) -> tuple:
    """The authors' VideoAnimator networks in eval mode, applied layer by layer with torch.nn.functional
    to their state dicts ``d`` as sda/sda.py, rnn_audio.py, encoder_audio.py, encoder_image.py and
    img_generator.py lay them out (written here from those files' layer order, not calling this project):
    ``still (B, 3, H, W)``, ``audio (B, T, samples)``, ``noise (B, T, aux)`` -> z_id ``(B, id)`` and
    frames ``(B, T, 3, H, W)``. ``audio_layers``: (stride, padding) of the audio CNN's strided convs
    (:data:`AUTHORS_AUDIO`: 16 kHz, 0.2 s)."""
    f = torch.nn.functional
    enc, ident, gen = d["encoder"], d["encoder_id"], d["generator"]
    b, t = audio.shape[:2]
    # audio: strided conv + BN + ReLU layers, then a full-length conv + tanh; then a 2-layer GRU
    x = audio.reshape(b * t, 1, -1)
    for i, (stride, pad) in enumerate(audio_layers):
        x = f.conv1d(x, enc[f"encoder.cl.{i}.weight"], enc[f"encoder.cl.{i}.bias"], stride=stride, padding=pad)
        x = torch.relu(_batch_norm(x, enc, f"encoder.activations.{i}.0"))
    n = len(audio_layers)
    x = torch.tanh(f.conv1d(x, enc[f"encoder.cl.{n}.weight"], enc[f"encoder.cl.{n}.bias"]))
    z = _gru(_gru(x.view(b, t, -1), enc, "rnn", 0), enc, "rnn", 1)
    # the still: 4x4 stride-2 convs (no bias) + BN + ReLU, keeping each map; a whole-map conv + tanh
    y, maps = still, []
    layers = sum(1 for k in ident if k.endswith(".0.weight")) - 1
    for i in range(layers):
        y = torch.relu(_batch_norm(f.conv2d(y, ident[f"cl.{i}.0.weight"], stride=2, padding=1), ident, f"cl.{i}.1"))
        maps.append(y)
    z_id = torch.tanh(f.conv2d(y, ident[f"cl.{layers}.0.weight"])).flatten(1)
    # the decoder: latent [z_c, tanh(GRU(noise)), z_id] per frame, skips deepest first, each clip's
    # maps repeated for its T frames
    aux = torch.tanh(_gru(noise, gen, "rnn_noise", 0))
    latent = torch.cat([z, aux, z_id[:, None].expand(b, t, -1)], 2).reshape(b * t, -1, 1, 1)
    x = torch.relu(_batch_norm(f.conv_transpose2d(latent, gen["dcl.0.0.weight"]), gen, "dcl.0.1"))
    skips = [m.repeat_interleave(t, 0) for m in maps[::-1]]
    for j in range(1, layers):  # UnetBlock: cat [x, skip] -> 3x3 -> BN ReLU -> 4x4 stride 2 -> BN ReLU
        x = f.conv_transpose2d(torch.cat([x, skips[j - 1]], 1), gen[f"dcl.{j}.dcl1.weight"], padding=1)
        x = torch.relu(_batch_norm(x, gen, f"dcl.{j}.activation1.0"))
        x = f.conv_transpose2d(x, gen[f"dcl.{j}.dcl2.weight"], stride=2, padding=1)
        x = torch.relu(_batch_norm(x, gen, f"dcl.{j}.activation2.0"))
    x = torch.tanh(f.conv_transpose2d(x, gen[f"dcl.{layers}.weight"], stride=2, padding=1))
    return z_id, x.view(b, t, *x.shape[1:])


def lively(d: dict) -> dict:
    """Rescale a :func:`fake_dat` file's weights in place so that every layer passes on a signal: conv
    kernels He's N(0, 2 / fan-in), batch-norm scales ~ 1 (fake_dat's N(0, 0.1^2) fade into the batch
    norms' constant biases, where a mirrored kernel would change little but the borders). Returns ``d``."""
    for module in ("encoder", "encoder_id", "generator"):
        for key, value in d[module].items():
            if value.dim() >= 3:  # a conv kernel, N(0, 0.1^2) in fake_dat: fan-in = input channels x kernel size
                fan_in = value[0].numel() if not key.startswith("dcl") else value[:, 0].numel()
                value.mul_((2 / fan_in) ** 0.5 / 0.1)
            elif value.dim() == 1 and key.endswith(".weight"):  # a batch-norm scale
                value.add_(1.0)
    return d


def test_converted_generator_computes_what_the_authors_networks_compute(tmp_path):
    """A forward pass of the converted generator against the authors' networks written out here with
    torch.nn.functional (:func:`authors_forward`) on the same random weights: a kernel landed
    mirrored, transposed or in another layer, a channel order or a skip joined wrongly, which the
    one-constant-per-tensor test cannot see, gives other numbers. The weights are the fake file's,
    rescaled so that every layer passes on a signal (:func:`lively`)."""
    src = fake_dat(tmp_path / "grid.dat")
    d = lively(torch.load(src, weights_only=False))
    torch.save(d, src)
    gen = Animator(convert_file(src, tmp_path / "grid.pt"), device="cpu").generator
    rng = torch.Generator().manual_seed(1)
    still = torch.rand(2, 3, 64, 48, generator=rng) * 2 - 1
    audio = torch.randn(2, 3, SETTINGS["audio_feat_samples"], generator=rng) * 0.3
    noise = torch.randn(2, 3, SETTINGS["aux_latent"], generator=rng) * 0.33
    with torch.no_grad():
        z_id, expected = authors_forward(d, still, audio, noise)
        ours_id = gen.identity_encoder(still)[0]
        frames = gen(still, audio, noise)
    assert expected.std() > 0.1 and (expected.abs() < 0.99).float().mean() > 0.9  # frames with contrast, not saturated
    torch.testing.assert_close(ours_id, z_id, atol=1e-5, rtol=0)
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=0)


def test_converted_model_animates_a_clip_aligned_to_its_mean_face(tmp_path, grid_mini):
    out = tmp_path / "grid.pt"
    assert main(["import-sda", str(fake_dat(tmp_path / "grid.dat")), "-o", str(out)]) == 0
    animator = Animator(out, device="cpu")
    frames, _ = read_video(grid_mini / "bbaf2n.mpg")
    audio = read_audio(grid_mini / "bbaf2n.mpg", 16000)
    video = animator(frames[0], audio, sample_rate=16000)
    assert video.shape == (len(audio) // 640, 64, 48, 3)  # floor(samples / stride), as theirs (ours: ceil)
    assert len(video) in (74, 75)
    assert video.std() > 1.0
    # the still is aligned so that its five stable points sit on mean_face's (68-point 33, 36, 39, 42, 45:
    # FaceMesh STABLE_POINTS_68)
    from speechanim.align import STABLE_POINTS_68, AlignConfig, align_image, stable_positions

    target = torch.load(out, weights_only=True)["alignment"]["stable_points"]
    aligned = align_image(frames[0], AlignConfig(size=(64, 48), stable_target=tuple(map(tuple, target)),
                                                 stable_points=STABLE_POINTS_68))
    np.testing.assert_array_equal(animator.align(frames[0]), aligned.frames[0])
    ours = align_image(frames[0], AlignConfig(size=(64, 48))).frames[0]
    assert np.abs(ours.astype(int) - aligned.frames[0]).mean() > 10
    assert np.abs(stable_positions(aligned.landmarks[0], STABLE_POINTS_68) - np.asarray(target)).max() < 3.0
    # full-scale audio, as the authors: half as loud is a different input (peak normalisation would hide it)
    assert not np.array_equal(animator.prepare_audio(audio, 16000), animator.prepare_audio(audio * 0.5, 16000))


@pytest.mark.parametrize("problem, match", [
    ({"drop": "generator.dcl.2.dcl1.weight"}, "missing tensor generator.dcl.2.dcl1.weight"),
    ({"reshape": "encoder_id.cl.1.0.weight"}, r"encoder_id.cl.1.0.weight has shape \(129, 64, 4, 4\)"),
    ({"reshape": "encoder.encoder.cl.0.weight", "audio_rate": 16000}, "encoder.encoder.cl.0.weight has shape"),
    ({"sequential_noise": False}, "sequential_noise"),
    ({"img_size": (64,)}, "img_size"),
    ({"audio_feat_samples": 3000}, "audio_feat_samples"),
])
def test_bad_files_are_refused_naming_the_key(tmp_path, problem, match):
    src = fake_dat(tmp_path / "bad.dat", **problem)
    with pytest.raises(SdaError, match=match):
        convert_file(src, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_missing_settings_and_code_are_refused(tmp_path, capsys):
    src = fake_dat(tmp_path / "grid.dat")
    d = torch.load(src, weights_only=False)
    del d["mean_face"]
    torch.save(d, tmp_path / "noface.dat")
    assert main(["import-sda", str(tmp_path / "noface.dat"), "-o", str(tmp_path / "x.pt")]) == 1
    assert "noface.dat: not an authors' checkpoint: no 'mean_face'" in capsys.readouterr().err
    generator = d.pop("generator")
    torch.save(d, tmp_path / "noface.dat")
    with pytest.raises(SdaError, match=r"noface\.dat: not an authors' checkpoint: no 'mean_face', 'generator'$"):
        convert_file(tmp_path / "noface.dat", tmp_path / "x.pt")  # every missing key, in the order of the layout
    d["generator"] = generator

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))
    d["mean_face"] = Boom()
    torch.save(d, tmp_path / "evil.dat")
    with pytest.raises(CheckpointError, match="could run code"):
        convert_file(tmp_path / "evil.dat", tmp_path / "evil.pt")
    (tmp_path / "junk.dat").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CheckpointError, match="junk.dat"):
        convert_file(tmp_path / "junk.dat", tmp_path / "junk.pt")


# ------------------------------------------------------------------ each setting's check, on both sides of it
# (mutation testing, docs/mutants.md): the values are the rules of the module doc, worked out by hand.


def _settings_dict(**changes) -> dict:
    return {**SETTINGS, "mean_face": mean_face(SETTINGS["img_size"]), **changes}


def test_each_setting_must_be_a_positive_number_of_its_kind():
    from speechanim.sda import _setting

    d = {"n": 3, "n64": np.int64(5), "x": 0.2, "xi": 2, "x32": np.float32(0.5), "b": True, "nb": np.bool_(False),
         "zero": 0, "neg": -1.0, "flag": True, "text": "3", "one": 1}
    assert _setting(d, "n", int, "f") == 3 and type(_setting(d, "n64", int, "f")) is int
    assert _setting(d, "one", int, "f") == 1  # the smallest positive int
    assert _setting(d, "x", float, "f") == 0.2 and _setting(d, "xi", float, "f") == 2.0
    assert type(_setting(d, "xi", float, "f")) is float and _setting(d, "x32", float, "f") == 0.5
    assert _setting(d, "b", bool, "f") is True and _setting(d, "nb", bool, "f") is False
    for key, kind, shown in (("zero", int, "0"), ("zero", float, "0"), ("neg", float, "-1.0"), ("flag", int, "True"),
                             ("flag", float, "True"), ("text", int, "'3'"), ("x", int, "0.2"), ("n", bool, "3")):
        with pytest.raises(SdaError, match=rf"^f: '{key}' must be a positive {kind.__name__}, got {shown}$"):
            _setting(d, key, kind, "f")
    with pytest.raises(SdaError, match=r"^f: has no 'gone' \(an authors' checkpoint holds img_size, audio_rate, "
                                       r"video_rate, audio_feat_len, audio_feat_samples, id_enc_dim, rnn_gen_dim, "
                                       r"aud_enc_dim, aux_latent, sequential_noise, mean_face\)$"):
        _setting(d, "gone", int, "f")


def test_model_config_reads_the_settings_and_names_what_is_wrong():
    from speechanim.sda import model_config

    cfg = model_config(_settings_dict(img_size=[np.int64(64), 48]), "g.dat")
    assert (cfg.image_size, cfg.sample_rate, cfg.audio_window_s, cfg.id_dim, cfg.audio_feat_dim, cfg.context_dim,
            cfg.context_layers, cfg.noise_dim, cfg.unet_skips) == ((64, 48), 16000, 0.2, 12, 8, 16, 2, 4, "authors")
    # 0.2 s at 16 kHz: 3200 samples; 0.16 s x 44100 = 7056 exactly; 0.0333 s x 16000 = 532.8: 532 (their int())
    # or 533 (rounded) are both accepted, 534 is not
    assert model_config(_settings_dict(audio_feat_len=0.0333, audio_feat_samples=532)).audio_window_s == 0.0333
    assert model_config(_settings_dict(audio_feat_len=0.0333, audio_feat_samples=533)).sample_rate == 16000
    assert model_config(_settings_dict(audio_rate=8000, audio_feat_samples=1600)).sample_rate == 8000  # 0.2 s x 8 kHz
    with pytest.raises(SdaError, match=r"^g\.dat: 'audio_feat_samples' 534 is not audio_feat_len x audio_rate "
                                       r"\(0\.0333 x 16000\)$"):
        model_config(_settings_dict(audio_feat_len=0.0333, audio_feat_samples=534), "g.dat")
    for size in ((64,), (64, 48, 3), "64x48", (64.0, 48), None):
        with pytest.raises(SdaError, match=rf"^checkpoint: 'img_size' must be \(height, width\), got "):
            model_config(_settings_dict(img_size=size))
    with pytest.raises(SdaError, match=r"^g\.dat: 'sequential_noise' is False \(noise without its GRU\): not "
                                       r"supported; the released GRID, TCD-TIMIT and CREMA-D models use True$"):
        model_config(_settings_dict(sequential_noise=False), "g.dat")
    for key in ("video_rate", "audio_rate"):
        with pytest.raises(SdaError, match=rf"^g\.dat: '{key}' must be a positive int, got 0$"):
            model_config(_settings_dict(**{key: 0}), "g.dat")
    for key, value, shown in (("sequential_noise", "yes", "bool, got 'yes'"),
                              ("audio_feat_len", -0.2, "float, got -0.2"), ("audio_feat_samples", 0, "int, got 0")):
        with pytest.raises(SdaError, match=rf"^g\.dat: '{key}' must be a positive {shown}$"):
            model_config(_settings_dict(**{key: value}), "g.dat")
    for key in ("id_enc_dim", "aud_enc_dim", "rnn_gen_dim", "aux_latent"):  # read while the network's settings are
        with pytest.raises(SdaError, match=rf"^g\.dat: its settings do not describe a network this project can build "
                                           rf"\(g\.dat: '{key}' must be a positive int, got 0\)$"):
            model_config(_settings_dict(**{key: 0}), "g.dat")
    with pytest.raises(SdaError, match=r"^g\.dat: its settings do not describe a network this project can build "
                                       r"\(image size \(60, 48\)"):
        model_config(_settings_dict(img_size=(60, 48)), "g.dat")
    with pytest.raises(SdaError, match=r"^g\.dat: its settings \(as this project's model_config\): audio_window_s 2\.0 "
                                       r"is not in"):
        model_config(_settings_dict(audio_feat_len=2.0, audio_feat_samples=32000), "g.dat")


def test_is_converted_reads_the_source_format():
    from speechanim.sda import SOURCE_FORMAT, is_converted

    assert SOURCE_FORMAT == "DinoMan/speech-driven-animation"
    assert is_converted({"source": {"format": "DinoMan/speech-driven-animation"}})
    assert not is_converted({"source": {"format": "other"}}) and not is_converted({})
    assert not is_converted({"source": "DinoMan/speech-driven-animation"})


def test_authors_resample_is_an_fft_resample_to_a_truncated_length():
    from speechanim.sda import authors_resample

    same = authors_resample(np.array([1, -2, 3], np.int16), 16000, 16000)
    assert same.dtype == np.float32 and same.tolist() == [1.0, -2.0, 3.0]
    tone = np.cos(2 * np.pi * 4 * np.arange(100) / 100)  # 4 periods in 100 samples: periodic, as the FFT takes it
    out = authors_resample(tone, 1000, 1500)  # int(100 * 1500 / 1000) = 150 samples
    assert out.dtype == np.float32 and out.shape == (150,)
    np.testing.assert_allclose(out, np.cos(2 * np.pi * 4 * np.arange(150) / 150), atol=1e-5)
    assert authors_resample(np.zeros(101), 3, 2).shape == (67,)  # 101 x 2 / 3 = 67.3: truncated, not rounded
    # float32 samples (an array given to Animator) are resampled in double precision: within one float32 step
    # (1.2e-7 at 1.0) of the exact tone, where an FFT in float32 would be 2e-7 off
    out = authors_resample(tone.astype(np.float32), 1000, 1500)
    np.testing.assert_allclose(out, np.cos(2 * np.pi * 4 * np.arange(150) / 150), rtol=0, atol=1e-7)


def test_mean_face_must_hold_the_stable_points_inside_the_crop(tmp_path):
    from speechanim.sda import STABLE_68, _mean_face

    assert STABLE_68 == (33, 36, 39, 42, 45)
    from speechanim.models import ModelConfig

    cfg = ModelConfig(image_size=(64, 48))
    face = np.zeros((68, 2))
    face[list(STABLE_68)] = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]
    assert _mean_face({"mean_face": face}, cfg, tmp_path) == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]
    # up to a crop outside on each side is allowed (x in [-48, 96], y in [-48, 128] for 64 x 48)
    for x, y in ((-48, 0), (96, 0), (0, 128), (0, -48)):
        edge = face.copy()
        edge[36] = [x, y]
        _mean_face({"mean_face": edge}, cfg, tmp_path)
    for x, y in ((-48.5, 0), (96.5, 0), (0, 128.5), (0, -48.5)):
        out = face.copy()
        out[45] = [x, y]
        with pytest.raises(SdaError, match=r"'mean_face' is not in the pixel coordinates of a 64x48 crop$"):
            _mean_face({"mean_face": out}, cfg, tmp_path)
    far = face.copy()
    far[0] = [1e6, 1e6]  # a point that is not a stable one may lie anywhere
    _mean_face({"mean_face": far}, cfg, tmp_path)
    gap = face.tolist()
    gap[3] = [None, None]  # a point missing from a list of lists: NaN, refused like one
    for bad in (face[:45], face[:, :1], np.zeros((68, 2, 1)), np.where(np.arange(68)[:, None] == 3, np.nan, face), gap):
        with pytest.raises(SdaError, match=rf"'mean_face' must be 68 finite \(x, y\) points, got shape "):
            _mean_face({"mean_face": bad}, cfg, tmp_path)
    _mean_face({"mean_face": face[:46]}, cfg, tmp_path)  # point 45 is the last one read


def test_the_converted_file_records_how_the_authors_prepare_inputs(tmp_path, capsys):
    import hashlib

    from speechanim.checkpoint import load_checkpoint
    from speechanim.sda import main as sda_main

    src = fake_dat(tmp_path / "crema.dat", video_rate=30, audio_rate=16000)
    assert sda_main([str(src), "-o", str(tmp_path / "out" / "crema.pt")]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'out' / 'crema.pt'}\n"
    p = load_checkpoint(tmp_path / "out" / "crema.pt")
    assert p["variant"] == "sda" and p["dataset"] == "crema" and p["fps"] == 30.0 and type(p["fps"]) is float
    assert p["audio_scaling"] == "full_scale" and p["audio_stride"] == 533  # int(16000 / 30), truncated
    assert p["alignment"]["scheme"] == "sda-68" and len(p["alignment"]["stable_points"]) == 5
    assert p["source"] == {"file": "crema.dat", "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                           "format": "DinoMan/speech-driven-animation"}
    assert p["model_config"]["image_size"] == [64, 48]
    bad = fake_dat(tmp_path / "bad.dat", video_rate=300)
    assert sda_main([str(bad), "-o", str(tmp_path / "bad.pt")]) == 1
    assert capsys.readouterr().err == (f"speechanim import-sda: {bad}: its frame rate fps=300.0 is not a number in "
                                       "[1, 240]\n")
    assert not (tmp_path / "bad.pt").exists()


def test_a_file_with_more_or_other_tensors_than_the_authors_networks_is_refused(tmp_path):
    from speechanim.sda import convert

    d = torch.load(fake_dat(tmp_path / "g.dat"), weights_only=False)
    d["generator"]["dcl.9.weight"] = torch.zeros(1)
    with pytest.raises(SdaError, match=r"^g\.dat: unexpected tensor generator\.dcl\.9\.weight \(not a layer of the "
                                       r"authors' released networks\)$"):
        convert(d, "g.dat")
    with pytest.raises(SdaError, match=r"^checkpoint: unexpected tensor generator\.dcl\.9\.weight"):
        convert(d)  # no file named: "checkpoint"
    d = torch.load(fake_dat(tmp_path / "g.dat"), weights_only=False)
    d["encoder_id"]["cl.0.0.weight"] = np.zeros((64, 3, 4, 4))
    with pytest.raises(SdaError, match=r"^g\.dat: encoder_id\.cl\.0\.0\.weight is a ndarray, not a tensor$"):
        convert(d, "g.dat")
    d["encoder_id"] = [1]
    with pytest.raises(SdaError, match=r"^g\.dat: has no 'encoder_id' state dict$"):
        convert(d, "g.dat")
    d = torch.load(fake_dat(tmp_path / "g.dat"), weights_only=False)
    del d["generator"]["dcl.0.1.num_batches_tracked"]  # older files lack the counters: zero
    cfg, state = convert(d, "g.dat")
    assert state["frame_decoder.project.1.num_batches_tracked"].item() == 0
    Generator(cfg).load_state_dict(state)  # strict: every later layer is still converted
    assert state["identity_encoder.layers.0.1.num_batches_tracked"].item() == 7
    d["generator"]["dcl.0.1.running_mean"] = torch.full_like(d["generator"]["dcl.0.1.running_mean"], float("inf"))
    with pytest.raises(CheckpointError, match=r"^g\.dat: the authors' weight generator\.dcl\.0\.1\.running_mean holds NaN"):
        convert(d, "g.dat")
    d = torch.load(fake_dat(tmp_path / "g.dat"), weights_only=False)
    d["encoder"]["rnn.bias_hh_l0"] = d["encoder"]["rnn.bias_hh_l0"].double()
    _, state = convert(d, "g.dat")
    assert state["context_encoder.rnn.bias_hh_l0"].dtype == torch.float32  # cast to the parameter's dtype


def test_a_files_audio_is_read_as_the_authors_read_it(tmp_path):
    """Channels averaged, (L + R) / 2, on the int16 scale / 32767, then resampled like :func:`authors_resample`."""
    from scipy.io import wavfile

    from speechanim.media import MediaError
    from speechanim.sda import authors_file_audio

    left = np.array([1000, -2000, 32767, 0] * 400, np.int16)
    right = np.array([3000, 0, 32767, -32768] * 400, np.int16)
    wavfile.write(tmp_path / "stereo.wav", 16000, np.stack([left, right], axis=1))
    got = authors_file_audio(tmp_path / "stereo.wav", 16000)
    expected = (left.astype(np.float64) + right) / 2 / 32767
    assert got.dtype == np.float32 and got.shape == (1600,)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    wavfile.write(tmp_path / "mono.wav", 16000, left)
    np.testing.assert_allclose(authors_file_audio(tmp_path / "mono.wav", 16000), left / 32767, atol=1e-6)
    assert authors_file_audio(tmp_path / "mono.wav", 8000).shape == (800,)  # int(1600 x 8000 / 16000)
    with pytest.raises(MediaError, match=r"nothing\.wav: no such file"):
        authors_file_audio(tmp_path / "nothing.wav", 16000)
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(MediaError, match=r"text\.wav"):
        authors_file_audio(tmp_path / "text.wav", 16000)


def test_a_named_channel_layout_is_read_as_ffmpegs_own_mono_mix(tmp_path):
    """A layout ffmpeg names without a channel count (here quad) is mixed to mono by ffmpeg itself (the
    module doc), on the authors' int16 scale: not first to stereo and then averaged."""
    import subprocess

    import imageio_ffmpeg
    from scipy.io import wavfile

    from speechanim.sda import authors_file_audio

    four = np.zeros((1600, 4), np.int16)
    four[:, 0], four[:, 3] = [1000, -2000, 32767, 0] * 400, [3000, 0, -32768, 500] * 400  # front left, back right
    wavfile.write(tmp_path / "four.wav", 16000, four)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(tmp_path / "four.wav"),
                    "-af", "channelmap=map=0|1|2|3:channel_layout=quad", str(tmp_path / "quad.wav")], check=True)
    mono = read_audio(tmp_path / "quad.wav", 16000)  # ffmpeg's mono mix, / 32768
    np.testing.assert_allclose(authors_file_audio(tmp_path / "quad.wav", 16000), mono * 32768 / 32767, atol=1e-6)


def test_the_generator_and_the_key_map_must_name_the_same_layers(tmp_path, monkeypatch):
    """A layer added to :class:`Generator` without its authors' name in the key map is a bug here, named by its keys."""
    import speechanim.sda as sda

    class GrownGenerator(Generator):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.extra = torch.nn.Linear(2, 2)

    d = torch.load(fake_dat(tmp_path / "g.dat"), weights_only=False)
    monkeypatch.setattr(sda, "Generator", GrownGenerator)
    with pytest.raises(AssertionError, match=r"^key map out of date: \['extra\.bias', 'extra\.weight'\]$"):
        sda.convert(d, "g.dat")


def test_a_mean_face_outside_the_crop_is_refused_naming_the_file(tmp_path):
    src = fake_dat(tmp_path / "grid.dat")
    d = torch.load(src, weights_only=False)
    d["mean_face"] = d["mean_face"] + 1000.0  # every point far right of and below the 64 x 48 crop
    torch.save(d, src)
    with pytest.raises(SdaError, match=rf"^{re.escape(str(src))}: 'mean_face' is not in the pixel coordinates of a "
                                       rf"64x48 crop$"):
        convert_file(src, tmp_path / "grid.pt")


def test_a_file_holding_other_python_objects_converts_only_when_trusted(tmp_path, capsys):
    import datetime

    from speechanim.sda import main as sda_main

    d = torch.load(fake_dat(tmp_path / "grid.dat"), weights_only=False)
    d["saved"] = datetime.date(2019, 6, 1)  # harmless, but not a tensor, plain value or numpy array
    torch.save(d, tmp_path / "grid.dat")
    with pytest.raises(CheckpointError, match="could run code"):
        convert_file(tmp_path / "grid.dat", tmp_path / "grid.pt")
    assert convert_file(tmp_path / "grid.dat", tmp_path / "grid.pt", trust=True) == tmp_path / "grid.pt"
    assert sda_main([str(tmp_path / "grid.dat"), "-o", str(tmp_path / "cli.pt"), "--trust-checkpoint"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'cli.pt'}\n"


def test_python_m_speechanim_sda_command_line(tmp_path, capsys):
    """``python -m speechanim.sda`` (the DAG's pretrained rule runs it): its help, and a bad command line refused as
    argparse refuses one (exit 2, the usage, the problem) before anything is read."""
    from speechanim.sda import main as sda_main

    with pytest.raises(SystemExit) as e:
        sda_main(["--help"])
    assert e.value.code == 0
    assert " ".join(capsys.readouterr().out.split()) == (
        "usage: speechanim import-sda [-h] -o OUT [--trust-checkpoint] model "
        "Import the authors' released checkpoints (``grid.dat``, ``timit.dat``, ``crema.dat``). "
        "positional arguments: model the authors' checkpoint (grid.dat, timit.dat, crema.dat) "
        "options: -h, --help show this help message and exit -o OUT, --out OUT the checkpoint to write (.pt) "
        "--trust-checkpoint unpickle a file that holds more than tensors, plain values and numpy arrays (it could "
        "run code)")
    src = tmp_path / "grid.dat"
    src.write_bytes(b"their file")
    with pytest.raises(SystemExit) as e:
        sda_main([str(src)])
    assert e.value.code == 2
    assert capsys.readouterr().err.endswith("speechanim import-sda: error: the following arguments are required: "
                                            "-o/--out\n")
    with pytest.raises(SystemExit) as e:
        sda_main([str(src), "-o", str(src)])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"speechanim import-sda: error: -o {src} is the same file as the .dat file {src}: writing it would destroy or "
        "change the input; nothing was written, name an output elsewhere")
    assert src.read_bytes() == b"their file"
