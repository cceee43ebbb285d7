"""The temporal GAN's networks (paper sections 3.1-3.2): shapes, streaming, static baseline,
variable-length sequences, gradient flow."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from speechanim import models
from speechanim.models import (
    AudioFrameEncoder,
    FrameDiscriminator,
    Generator,
    ModelConfig,
    SequenceDiscriminator,
    audio_plan,
    count_parameters,
    image_plan,
)

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def small_config(**overrides) -> ModelConfig:
    """A CPU-sized model: 64 x 48 frames, narrow convolutions, 8 kHz audio (0.16 s = 1280 samples)."""
    kw = dict(image_size=(64, 48), sample_rate=8000, width=0.125, id_dim=8, audio_feat_dim=16, context_dim=16,
              noise_dim=4, seq_disc_image_dim=8, seq_disc_audio_dim=8, seq_disc_hidden=16, seq_disc_classifier_hidden=8)
    kw.update(overrides)
    return ModelConfig(**kw)


def inputs(cfg: ModelConfig, batch: int, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.image_size
    still = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    frames = torch.rand(batch, steps, 3, h, w, generator=g) * 2 - 1
    audio = torch.randn(batch, steps, cfg.window, generator=g) * 0.3
    return still, frames, audio


def calibrated(net: torch.nn.Module, *args) -> torch.nn.Module:
    """``net`` in eval mode with batch-norm running statistics taken from one pass over ``args``.

    Freshly built, the running statistics (mean 0, variance 1) do not fit the activations of weights
    drawn from N(0, 0.02), and eval-mode outputs shrink to ~1e-6; a trained model has fitted ones.
    """
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one pass, the statistics of that pass
    net.train()
    with torch.no_grad():
        net(*args)
    return net.eval()


def ready(net: torch.nn.Module, cfg: ModelConfig) -> torch.nn.Module:
    """``net`` :func:`calibrated` on a random batch of its own inputs (2 clips, 6 frames)."""
    still, frames, audio = inputs(cfg, 2, 6, seed=99)
    if isinstance(net, Generator):
        return calibrated(net, still, audio)
    if isinstance(net, FrameDiscriminator):
        return calibrated(net, frames, still)
    return calibrated(net, frames, audio)


def conv_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in module.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose2d))]


# ------------------------------------------------------------------ configuration and layer plans


def test_config_defaults_are_the_papers():
    cfg = ModelConfig()
    assert cfg.image_size == (128, 96)  # H x W, the authors' GRID crop
    assert (cfg.id_dim, cfg.context_dim, cfg.context_layers, cfg.noise_dim) == (50, 256, 2, 10)
    assert cfg.noise_std == 0.33
    assert cfg.window == 2560  # 0.16 s at 16 kHz
    assert ModelConfig(sample_rate=50000).window == 8000


def test_image_plan_gives_six_layers_at_128x96():
    assert image_plan((128, 96)) == (5, (4, 3))  # 5 strided layers to 4x3, then the final layer: 6
    assert image_plan((64, 48)) == (4, (4, 3))
    assert image_plan((32, 24)) == (3, (4, 3))
    with pytest.raises(ValueError):
        image_plan((100, 96))


@pytest.mark.parametrize("rate,kernel,stride", [(16000, 80, 16), (50000, 250, 50), (8000, 40, 8)])
def test_audio_plan_scales_the_first_kernel_with_the_rate(rate, kernel, stride):
    specs, remaining = audio_plan(int(0.16 * rate), rate, 0.005, 0.001)
    assert (specs[0].kernel, specs[0].stride) == (kernel, stride)  # 5 ms kernel, 1 ms stride
    # 160 steps after the first layer = 2^5 * 5: five stride-2 layers (kernel 4), then a length-5 conv
    assert [(s.kernel, s.stride) for s in specs[1:]] == [(4, 2)] * 5
    assert remaining == 5
    enc = AudioFrameEncoder(ModelConfig(sample_rate=rate), 32).eval()
    with torch.no_grad():
        assert enc(torch.randn(3, 2, int(0.16 * rate))).shape == (3, 2, 32)


# ------------------------------------------------------------------ the paper-size model


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    cfg = ModelConfig()
    still, frames, audio = inputs(cfg, 1, 8, seed=1)
    return (cfg, calibrated(Generator(cfg), still, audio), calibrated(FrameDiscriminator(cfg), frames, still),
            calibrated(SequenceDiscriminator(cfg), frames, audio))


def test_paper_size_shapes_and_parameter_counts(paper_model):
    cfg, gen, d_img, d_seq = paper_model
    for name, net in [("Generator", gen), ("  IdentityEncoder", gen.identity_encoder),
                      ("  ContextEncoder", gen.context_encoder), ("  NoiseGenerator", gen.noise_generator),
                      ("  FrameDecoder", gen.frame_decoder), ("FrameDiscriminator", d_img),
                      ("SequenceDiscriminator", d_seq)]:
        print(f"{name:24s} {count_parameters(net):>12,d} parameters")
    still, _, audio = inputs(cfg, 2, 75)
    assert audio.shape == (2, 75, 2560)
    with torch.no_grad():
        z_id, maps = gen.identity_encoder(still)
        video = gen(still, audio)
        frame_logits = d_img(video, still)
        seq_logits = d_seq(video, audio)
    assert z_id.shape == (2, 50) and z_id.abs().max() <= 1
    assert [m.shape[1:] for m in maps] == [(64, 64, 48), (128, 32, 24), (256, 16, 12), (512, 8, 6), (1024, 4, 3)]
    assert len(conv_layers(gen.identity_encoder)) == 6  # "a 6 layer CNN" (3.1.1)
    assert len(conv_layers(d_img)) == 6  # "a 6-layer CNN" (3.2.1)
    assert d_img.net.layers[0][0].in_channels == 6  # frame + still, channel-wise
    assert gen.context_encoder.rnn.num_layers == 2 and not gen.context_encoder.rnn.bidirectional
    assert gen.context_encoder.rnn.hidden_size == 256
    assert gen.noise_generator.rnn.num_layers == 1 and gen.noise_generator.rnn.hidden_size == 10
    assert video.shape == (2, 75, 3, 128, 96)
    assert torch.isfinite(video).all() and video.min() >= -1 and video.max() <= 1
    assert frame_logits.shape == (2, 75) and seq_logits.shape == (2,)
    assert torch.isfinite(frame_logits).all() and torch.isfinite(seq_logits).all()


@pytest.mark.parametrize("size", [(32, 24), (64, 48)])
def test_small_sizes_build_and_run(size):
    cfg = small_config(image_size=size)
    gen, d_img, d_seq = (ready(net(cfg), cfg) for net in (Generator, FrameDiscriminator, SequenceDiscriminator))
    still, frames, audio = inputs(cfg, 2, 5)
    with torch.no_grad():
        assert gen(still, audio).shape == (2, 5, 3, *size)
        assert d_img(frames[:, 0], still).shape == (2,)
        assert d_seq(frames, audio).shape == (2,)


# ------------------------------------------------------------------ generator behaviour


def test_streaming_equals_whole_sequence():
    cfg = small_config()
    torch.manual_seed(1)
    gen = ready(Generator(cfg), cfg)
    still, _, audio = inputs(cfg, 2, 12)
    noise = gen.sample_noise(2, 12, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        whole = gen(still, audio, noise)
        identity = gen.encode_identity(still)
        state = gen.init_state(2)
        frames = []
        for k in range(12):
            frame, state = gen.step(identity, audio[:, k], state, noise[:, k])
            frames.append(frame)
    streamed = torch.stack(frames, 1)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=0)
    # The recurrence matters: restarting the state at every frame gives other frames.
    with torch.no_grad():
        restarted = torch.stack([gen.step(identity, audio[:, k], gen.init_state(2), noise[:, k])[0]
                                 for k in range(12)], 1)
    assert (restarted[:, 1:] - whole[:, 1:]).abs().max() > 1e-4


def test_streaming_with_a_torch_generator_draws_the_same_noise():
    cfg = small_config()
    gen = ready(Generator(cfg), cfg)
    still, _, audio = inputs(cfg, 1, 6)
    with torch.no_grad():
        whole = gen(still, audio, generator=torch.Generator().manual_seed(3))
        rng = torch.Generator().manual_seed(3)
        identity, state, frames = gen.encode_identity(still), gen.init_state(1), []
        for k in range(6):
            frame, state = gen.step(identity, audio[:, k], state, generator=rng)
            frames.append(frame)
        other = gen(still, audio, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(torch.stack(frames, 1), whole, atol=1e-5, rtol=0)
    assert (other - whole).abs().max() > 1e-5  # the noise does reach the frames


def test_noise_is_gaussian_with_the_authors_spread():
    gen = Generator(small_config())
    noise = gen.sample_noise(64, 100, generator=torch.Generator().manual_seed(0))
    assert noise.shape == (64, 100, 4)
    assert abs(noise.std().item() - 0.33) < 0.01 and abs(noise.mean().item()) < 0.01


def _gru_by_hand(x: torch.Tensor, w_ih, w_hh, b_ih, b_hh, h: torch.Tensor):
    """A one-layer GRU written out (PyTorch's gate order r, z, n): ``x (B, T, in)``, ``h (B, H)`` ->
    the outputs ``(B, T, H)`` and the last state ``(B, H)``."""
    outs = []
    for t in range(x.shape[1]):
        i_r, i_z, i_n = (x[:, t] @ w_ih.T + b_ih).chunk(3, 1)
        h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, 1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs, 1), h


def test_noise_generator_squashes_its_gru_output_with_tanh():
    """z_n = tanh(GRU(noise)) (sda/img_generator.py: rnn_noise then rnn_noise_squashing): with large
    weights and inputs the GRU's output saturates near +-1, and z_n is the tanh of the GRU written
    out by hand, so within tanh(1) ~ 0.762, where the GRU output alone reaches past 0.99. The state
    handed on is the GRU's own, unsquashed (the next step continues the recurrence, not the tanh)."""
    cfg = small_config(noise_dim=4)
    net = models.NoiseGenerator(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.rnn.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 3.0)
    noise = torch.randn(3, 7, 4, generator=g) * 10.0
    p = dict(net.rnn.named_parameters())
    with torch.no_grad():
        z_n, state = net(noise)
        gru, last = _gru_by_hand(noise, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"],
                                 torch.zeros(3, 4))
    assert gru.abs().max() > 0.99  # the pre-activation saturates
    torch.testing.assert_close(z_n, torch.tanh(gru), atol=1e-6, rtol=0)
    assert z_n.abs().max() <= math.tanh(1.0) + 1e-6
    assert state.shape == (1, 3, 4)
    torch.testing.assert_close(state[0], last, atol=1e-6, rtol=0)


def test_temporal_generator_is_causal():
    cfg = small_config()
    gen = ready(Generator(cfg), cfg)
    still, _, audio = inputs(cfg, 1, 8)
    noise = gen.sample_noise(1, 8, generator=torch.Generator().manual_seed(0))
    changed = audio.clone()
    changed[:, 4] = torch.randn_like(changed[:, 4])
    with torch.no_grad():
        a, b = gen(still, audio, noise), gen(still, changed, noise)
    diff = (a - b).abs().flatten(2).amax(2)[0]
    assert diff[:4].max() == 0  # earlier frames cannot see later audio
    assert (diff[4:] > 1e-6).all()  # the change carries forward through the GRU


def test_static_variant_has_no_temporal_dependency():
    cfg = small_config(static=True)
    gen = ready(Generator(cfg), cfg)
    assert gen.context_encoder.rnn is None and gen.noise_generator.rnn is None
    assert not any(isinstance(m, torch.nn.GRU) for m in gen.modules())
    still, _, audio = inputs(cfg, 2, 8)
    noise = gen.sample_noise(2, 8, generator=torch.Generator().manual_seed(0))
    k = 5
    changed = audio.clone()
    changed[:, k] = torch.randn_like(changed[:, k])
    with torch.no_grad():
        a, b = gen(still, audio, noise), gen(still, changed, noise)
        alone = gen(still, changed[:, k:k + 1], noise[:, k:k + 1])  # one window on its own
        identity = gen.encode_identity(still)
        stepped, state = gen.step(identity, changed[:, k], gen.init_state(2), noise[:, k])
    diff = (a - b).abs().flatten(2).amax(2)  # (B, T)
    assert (diff[:, k] > 1e-6).all()
    others = [t for t in range(8) if t != k]
    assert diff[:, others].max() == 0
    torch.testing.assert_close(alone[:, 0], b[:, k], atol=1e-5, rtol=0)
    torch.testing.assert_close(stepped, b[:, k], atol=1e-5, rtol=0)
    assert state.context is None and state.noise is None


def test_identity_comes_from_the_still():
    cfg = small_config()
    gen = ready(Generator(cfg), cfg)
    still, _, audio = inputs(cfg, 1, 3)
    noise = gen.sample_noise(1, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = gen(still, audio, noise), gen(-still, audio, noise)
    assert (a - b).abs().max() > 1e-4


# ------------------------------------------------------------------ discriminators


def test_frame_discriminator_accepts_frames_or_clips():
    cfg = small_config()
    d_img = ready(FrameDiscriminator(cfg), cfg)
    still, frames, _ = inputs(cfg, 2, 4)
    with torch.no_grad():
        per_clip = d_img(frames, still)
        per_frame = d_img(frames[:, 2], still)
    assert per_clip.shape == (2, 4)
    torch.testing.assert_close(per_clip[:, 2], per_frame, atol=1e-5, rtol=0)


def test_sequence_discriminator_handles_variable_lengths():
    cfg = small_config()
    torch.manual_seed(2)
    d_seq = ready(SequenceDiscriminator(cfg), cfg)
    lengths = [9, 4, 6]
    _, frames, audio = inputs(cfg, 3, 9, seed=5)  # padding beyond each length is random junk
    with torch.no_grad():
        batched = d_seq(frames, audio, torch.tensor(lengths))
        alone = torch.cat([d_seq(frames[i:i + 1, :n], audio[i:i + 1, :n]) for i, n in enumerate(lengths)])
        full = d_seq(frames, audio)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    assert (full[1:] - batched[1:]).abs().min() > 1e-6  # the lengths are really used
    with pytest.raises(ValueError):
        d_seq(frames, audio, [10, 4, 6])


def _judged(net, judge, x, row_weights):
    """``judge(x)``'s logits (rows, B), then a weighted sum of its rows backpropagated: the logits, x's
    gradient and every parameter's gradient."""
    net.zero_grad()
    x = x.clone().requires_grad_()
    logits = judge(x)
    (logits * torch.tensor(row_weights)[:, None]).sum().backward()
    return logits.detach(), x.grad, {n: p.grad.clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize("lengths", [None, [5, 3]])
def test_sequence_discriminator_judges_several_videos_as_separate_calls(lengths):
    """Real and generated videos judged together with one audio (the discriminator's step) give the
    logits and gradients of one call each, in training mode too (batch norm per video)."""
    cfg = small_config()
    d_seq = SequenceDiscriminator(cfg).train()
    _, real, audio = inputs(cfg, 2, 5, seed=1)
    _, fake, _ = inputs(cfg, 2, 5, seed=2)
    together = _judged(d_seq, lambda x: d_seq([real, x], audio, lengths), fake, [1.0, -2.0])
    apart = _judged(d_seq, lambda x: torch.stack([d_seq(real, audio, lengths), d_seq(x, audio, lengths)]), fake,
                    [1.0, -2.0])
    assert together[0].shape == (2, 2)
    torch.testing.assert_close(together[0], apart[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[1], apart[1], atol=1e-6, rtol=1e-4)
    for name, grad in together[2].items():
        torch.testing.assert_close(grad, apart[2][name], atol=1e-5, rtol=1e-4, msg=name)
    assert together[2]["audio_encoder.net.0.weight"].abs().sum() > 0  # the shared audio code is trained by both
    with pytest.raises(ValueError, match="one shape"):
        d_seq([real, fake[:, :4]], audio)


def test_sequence_discriminator_judges_real_videos_with_another_clips_audio():
    """mismatched=True adds a row: the first video with clip i+1's audio (the last with the first's),
    the logits and gradients of a separate call given that audio (batch norm over the same codes)."""
    cfg = small_config()
    d_seq = SequenceDiscriminator(cfg).train()
    _, real, audio = inputs(cfg, 3, 5, seed=1)
    _, fake, _ = inputs(cfg, 3, 5, seed=2)
    together = _judged(d_seq, lambda x: d_seq([real, x], audio, mismatched=True), fake, [1.0, -2.0, 0.5])
    # apart: the audio codes of the mismatched row are those of the clips' own audio, shifted by one clip
    apart = _judged(d_seq, lambda x: torch.cat([d_seq([real, x], audio), d_seq(real, audio.roll(-1, 0))[None]]),
                    fake, [1.0, -2.0, 0.5])
    assert together[0].shape == (3, 3)
    torch.testing.assert_close(together[0], apart[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[1], apart[1], atol=1e-6, rtol=1e-4)
    for name, grad in together[2].items():
        torch.testing.assert_close(grad, apart[2][name], atol=1e-5, rtol=1e-4, msg=name)
    assert d_seq(real, audio, mismatched=True).shape == (2, 3)  # one video: its own row and the mismatched one
    with pytest.raises(ValueError, match=">= 2 clips"):
        d_seq(real[:1], audio[:1], mismatched=True)
    with pytest.raises(ValueError, match="lengths"):
        d_seq(real, audio, [5, 4, 3], mismatched=True)


def test_sequence_discriminator_ignores_padding_in_training_mode():
    cfg = small_config()
    d_seq = SequenceDiscriminator(cfg).train()
    _, frames, audio = inputs(cfg, 2, 6)
    lengths = torch.tensor([6, 3])
    junk_frames, junk_audio = frames.clone(), audio.clone()
    junk_frames[1, 3:] = 5.0
    junk_audio[1, 3:] = -7.0
    torch.manual_seed(0)
    a = d_seq(frames, audio, lengths)
    b = d_seq(junk_frames, junk_audio, lengths)  # batch norm statistics must not see the padding
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_sequence_discriminator_is_conditioned_on_audio():
    cfg = small_config()
    d_seq = ready(SequenceDiscriminator(cfg), cfg)
    _, frames, audio = inputs(cfg, 2, 5)
    with torch.no_grad():
        assert (d_seq(frames, audio) - d_seq(frames, audio.flip(1))).abs().max() > 1e-6


# ------------------------------------------------------------------ gradient flow (paper eqs. 1-3)


def _assert_all_grads(net: torch.nn.Module, what: str):
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"{what}: no gradient reaches {missing}"


@pytest.mark.parametrize("static", [False, True])
def test_gradients_reach_every_parameter(static):
    cfg = small_config(static=static)
    torch.manual_seed(0)
    gen, d_img, d_seq = Generator(cfg).train(), FrameDiscriminator(cfg).train(), SequenceDiscriminator(cfg).train()
    still, real, audio = inputs(cfg, 2, 5)
    lengths = torch.tensor([5, 4])
    bce = F.binary_cross_entropy_with_logits
    h = cfg.image_size[0]

    def adversarial(fake):
        logits_img = d_img(fake[:, 1], still)  # one sampled frame per clip, S(x)
        logits_seq = d_seq(fake, audio, lengths)
        return bce(logits_img, torch.ones_like(logits_img)) + bce(logits_seq, torch.ones_like(logits_seq))

    def l1_lower_half(fake):  # eq. (2): the lower half of the face only
        return (fake[..., h // 2:, :] - real[..., h // 2:, :]).abs().mean()

    for name, loss_fn in [("adversarial", adversarial), ("L1", l1_lower_half)]:
        gen.zero_grad()
        loss_fn(gen(still, audio)).backward()
        _assert_all_grads(gen, f"generator, {name} loss")

    # Discriminator step: real vs detached fake.
    fake = gen(still, audio).detach()
    d_img.zero_grad()
    d_seq.zero_grad()
    r_img, f_img = d_img(real[:, 2], still), d_img(fake[:, 2], still)
    r_seq, f_seq = d_seq(real, audio, lengths), d_seq(fake, audio, lengths)
    loss_d = (bce(r_img, torch.ones_like(r_img)) + bce(f_img, torch.zeros_like(f_img))
              + bce(r_seq, torch.ones_like(r_seq)) + bce(f_seq, torch.zeros_like(f_seq)))
    loss_d.backward()
    _assert_all_grads(d_img, "frame discriminator")
    _assert_all_grads(d_seq, "sequence discriminator")


# ------------------------------------------------------------------ device placement


def test_device_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.device() == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda():
    cfg = small_config()
    dev = models.device()
    gen, d_seq = Generator(cfg).to(dev).eval(), SequenceDiscriminator(cfg).to(dev).eval()
    still, frames, audio = (x.to(dev) for x in inputs(cfg, 2, 4))
    with torch.no_grad():
        video = gen(still, audio, generator=torch.Generator(dev).manual_seed(0))
        identity, state = gen.encode_identity(still), gen.init_state(2)
        frame, state = gen.step(identity, audio[:, 0], state)
        logits = d_seq(frames, audio, [4, 2])
    assert video.device.type == frame.device.type == logits.device.type == "cuda"


def test_all_unet_levels_join_the_still_at_full_resolution():
    """unet_skips="all": every encoder map and the still itself reach the decoder, so a change to one
    pixel of the still changes the generated frames at that pixel (the authors' layout, whose finest
    skip is a quarter of the frame, moves it only through coarse maps); streaming still equals the
    whole sequence; a bad value is refused."""
    cfg = small_config(unet_skips="all")
    torch.manual_seed(0)
    gen = ready(Generator(cfg), cfg)
    still, _, audio = inputs(cfg, 2, 6)
    identity = gen.encode_identity(still)
    assert identity.skips[-1] is still and len(identity.skips) == len(gen.frame_decoder.blocks) + 1
    assert [s.shape[-2:] for s in identity.skips][-2:] == [torch.Size([s // 2 for s in cfg.image_size]),
                                                           torch.Size(cfg.image_size)]
    noise = gen.sample_noise(2, 6, generator=torch.Generator().manual_seed(3))
    still.requires_grad_(True)
    frames = gen(still, audio, noise)
    assert frames.shape == (2, 6, 3, *cfg.image_size)
    y, x = cfg.image_size[0] // 2, cfg.image_size[1] // 2
    grad, = torch.autograd.grad(frames[0, :, :, y, x].sum(), still)
    assert grad[0, :, y, x].abs().sum() > 0.5 * grad[0].abs().sum(dim=0).max()  # the same pixel counts most
    with torch.no_grad():
        identity = gen.encode_identity(still)
        state, streamed = gen.init_state(2), []
        for k in range(6):
            frame, state = gen.step(identity, audio[:, k], state, noise[:, k])
            streamed.append(frame)
        torch.testing.assert_close(torch.stack(streamed, 1), gen(still, audio, noise), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unet_skips"):
        small_config(unet_skips="some")


@pytest.mark.parametrize("skips", ["all", "authors"])
def test_decoder_adds_each_skips_share_once_per_clip(skips):
    """FrameDecoder computes conv(cat[x, skip]) as conv(x; W_x) + conv(skip; W_skip) with the skip's
    share once per clip: frames and gradients equal concatenating the skip to every frame (the
    plain U-Net formula, written out here), in training mode; channels-last weights change nothing.
    In float64, where the two orders of summation agree to ~1e-12 whatever the CPU's kernels (in float32
    the gradients differed by 1.3e-4 of the largest on a CPU with AMX, by 1e-5 on another)."""
    cfg = small_config(unet_skips=skips)
    torch.manual_seed(0)
    gen = Generator(cfg).train().double()
    still, _, audio = (x.double() for x in inputs(cfg, 3, 5))
    noise = gen.sample_noise(3, 5, generator=torch.Generator().manual_seed(1)).double()

    def concatenated(g: Generator) -> torch.Tensor:
        identity = g.encode_identity(still)
        z_c, _ = g.context_encoder(audio, None)
        z_n, _ = g.noise_generator(noise, None)
        b, t = z_c.shape[:2]
        latent = torch.cat([identity.z_id[:, None].expand(b, t, -1), z_c, z_n], -1).reshape(b * t, -1)
        per_frame = [s.repeat_interleave(t, 0) for s in identity.skips]
        d = g.frame_decoder
        x = d.project(latent[:, :, None, None])
        for block, s in zip(d.blocks, per_frame):
            x = block.up(block.mix(torch.cat([x, s], 1)))
        if skips == "all":
            x = torch.cat([x, per_frame[-1]], 1)
        return torch.tanh(d.to_rgb(x)).view(b, t, 3, *cfg.image_size)

    reference = concatenated(gen)
    frames = gen(still, audio, noise)
    torch.testing.assert_close(frames, reference, atol=1e-10, rtol=0)
    grads = torch.autograd.grad(frames.square().sum(), list(gen.parameters()))
    expected = torch.autograd.grad(reference.square().sum(), list(gen.parameters()))
    scale = max(float(g.abs().max()) for g in expected)
    for got, want in zip(grads, expected):  # rounding only (a bias before batch norm has ~0 gradient)
        torch.testing.assert_close(got, want, atol=1e-9 * scale, rtol=1e-7)
    gen.to(memory_format=torch.channels_last)
    torch.testing.assert_close(gen(still, audio, noise), reference, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="latent vectors for 3 clips"):
        gen.frame_decoder(torch.zeros(14, gen.frame_decoder.project[0].in_channels), gen.encode_identity(still).skips, 5)
