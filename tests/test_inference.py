"""The inference form of the generator (speechanim.inference): the same frames as the plain one."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from speechanim.inference import FastDecoder, FastGenerator
from speechanim.models import Generator, ModelConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _generator(**kw) -> Generator:
    torch.manual_seed(0)
    g = Generator(ModelConfig(image_size=(64, 48), width=0.25, sample_rate=8000, **kw))
    for m in g.modules():  # batch norm statistics and affine parameters away from 0 / 1
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    g.frame_decoder.to_rgb.weight.data *= 30  # frames with contrast, not a flat grey
    return g.eval()


def _inputs(g: Generator, frames: int = 12):
    gen = torch.Generator().manual_seed(1)
    still = torch.rand(2, 3, *g.cfg.image_size, generator=gen) * 2 - 1
    audio = torch.randn(2, frames, g.cfg.window, generator=gen) * 0.3
    return still, audio, g.sample_noise(2, frames, generator=gen)


@pytest.mark.parametrize("kw", [{"unet_skips": "authors"}, {"unet_skips": "all"}, {"static": True}],
                         ids=["authors", "all", "static"])
def test_fast_generator_gives_the_plain_generators_frames(kw):
    g = _generator(**kw)
    fast = FastGenerator(g)
    still, audio, noise = _inputs(g)
    with torch.no_grad():
        expected, state = g.run(g.encode_identity(still), audio, noise)
        identity = fast.encode_identity(still)
        whole, fast_state = fast.run(identity, audio, noise)
        steps, s = [], fast.init_state(2)
        for k in range(audio.shape[1]):  # streamed one frame at a time: the deepest layers take the matmul path
            frame, s = fast.step(identity, audio[:, k], s, noise[:, k])
            steps.append(frame)
    assert expected.std() > 0.1  # not a flat output
    torch.testing.assert_close(whole, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(steps, 1), expected, atol=1e-5, rtol=0)
    if state.context is not None:
        torch.testing.assert_close(fast_state.context, state.context)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_lower_precision_is_within_a_few_grey_levels(precision):
    g = _generator(unet_skips="authors")
    still, audio, noise = _inputs(g, frames=6)
    fast = FastGenerator(g, precision)
    with torch.no_grad():
        expected, _ = g.run(g.encode_identity(still), audio, noise)
        identity = fast.encode_identity(still)
        whole, _ = fast.run(identity, audio, noise)
        steps, s = [], fast.init_state(2)
        for k in range(audio.shape[1]):  # one frame at a time: the matrix-product (int8) path
            frame, s = fast.step(identity, audio[:, k], s, noise[:, k])
            steps.append(frame)
    for frames in (whole, torch.stack(steps, 1)):
        assert frames.dtype == torch.float32
        diff = (frames - expected).abs() * 127.5  # in grey levels of uint8 frames
        assert diff.mean() < 1.5 and diff.max() < 16.0, (diff.mean().item(), diff.max().item())


def test_bf16_runs_the_decoder_in_bfloat16_not_quietly_in_fp32(tmp_path):
    """``precision="bf16"`` must compute in bfloat16, which closeness to fp32 alone cannot show: every
    folded weight of the fast decoder, and the input of each transposed convolution it runs, is
    bfloat16 (seen by a spy on ``F.conv_transpose2d`` and ``F.fold``), and its frames differ from the
    fp32 decoder's by bfloat16's rounding (8 significant bits; here up to ~8e-3), where an fp32 run
    would give exactly the fp32 decoder's frames (the same code). The Animator passes its
    ``precision`` on to the decoder."""
    from tiny_generator import tiny_generator_checkpoint

    from speechanim.animate import Animator

    g = _generator(unet_skips="authors")
    still, audio, noise = _inputs(g, frames=3)
    seen = []
    conv_t, fold = F.conv_transpose2d, F.fold

    def spy(op):
        def call(x, *args, **kw):
            seen.append((op.__name__, x.dtype))
            return op(x, *args, **kw)
        return call

    fast = FastGenerator(g, "bf16")
    convs = [fast.decoder.project_id, fast.decoder.project_rest, *fast.decoder.mix, *fast.decoder.mix_skip,
             *fast.decoder.up, fast.decoder.to_rgb]
    assert {c.weight.dtype for c in convs} == {torch.bfloat16}
    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(F, "conv_transpose2d", spy(conv_t))
        mp.setattr(F, "fold", spy(fold))
        low, _ = fast.run(fast.encode_identity(still), audio, noise)
        fast.step(fast.encode_identity(still), audio[:, 0], fast.init_state(2), noise[:, 0])  # few pixels: fold
    assert {name for name, _ in seen} == {"conv_transpose2d", "fold"}
    assert {dtype for _, dtype in seen} == {torch.bfloat16}, seen
    single = FastGenerator(g, "fp32")
    with torch.no_grad():
        full, _ = single.run(single.encode_identity(still), audio, noise)
    assert low.dtype == torch.float32 and (low - full).abs().max() > 1e-3
    animator = Animator(tiny_generator_checkpoint(tmp_path / "g.pt", (64, 48), 8000, passes=1, steps=2),
                        device="cpu", precision="bf16")
    assert animator.fast.decoder.dtype == torch.bfloat16
    assert {c.weight.dtype for c in [animator.fast.decoder.to_rgb, *animator.fast.decoder.up]} == {torch.bfloat16}


def test_training_mode_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        FastDecoder(Generator(ModelConfig(image_size=(64, 48), width=0.125)).train().frame_decoder, 50)
