"""Encoder, policy, ensemble critic, random shift and task embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robofume.config import load_config
from robofume.networks import (
    Encoder,
    EnsembleCritic,
    Policy,
    conv_output_size,
    random_shift,
)
from robofume.text import TextEncoderError, make_text_encoder, task_embedding_table


@pytest.fixture(scope="module")
def net():
    return load_config("smoke").network


def test_conv_output_size_paper_encoder():
    # strides 2/1/1/1, 3x3, no padding: 100 -> 49 -> 47 -> 45 -> 43; 64 -> 31 -> 29 -> 27 -> 25
    assert conv_output_size(100, (2, 1, 1, 1)) == 43
    assert conv_output_size(64, (2, 1, 1, 1)) == 25
    with pytest.raises(ValueError, match="too small"):
        conv_output_size(8, (2, 1, 1, 1))


def test_encoder_shapes_range_and_input_check(net):
    enc = Encoder(net, 32)
    images = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    out = enc(images)
    assert out.shape == (5, net.feature_dim)
    assert out.abs().max() < 1.0  # tanh
    # a conv layer = conv + LayerNorm + ReLU, 4 of them
    convs = [m for m in enc.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 1, 1, 1]
    with pytest.raises(ValueError, match="32x32"):
        enc(torch.zeros(1, 40, 40, 3, dtype=torch.uint8))
    # channels_last weights give the same features
    enc_cl = Encoder(net, 32)
    enc_cl.load_state_dict(enc.state_dict())
    enc_cl.to(memory_format=torch.channels_last)
    assert torch.allclose(enc_cl(images), out, atol=1e-5)


def test_ensemble_critic_matches_concatenated_mlp(net):
    torch.manual_seed(0)
    critic = EnsembleCritic(net, state_dim=6, action_dim=2)
    state = torch.randn(3, 6)
    actions = torch.randn(3, 4, 2)
    q = critic(state, actions)
    assert q.shape == (2, 3, 4)
    # reference: critic e on the concatenation [state, action] of each pair
    for e in range(2):
        w1 = torch.cat([critic.w_state[e], critic.w_action[e]], 0)  # (S + A, H)
        x = torch.cat([state[:, None].expand(3, 4, 6), actions], -1)
        h = F.relu(x @ w1 + critic.b_first[e, 0])
        for layer in critic.trunk:
            if isinstance(layer, torch.nn.ReLU):
                h = F.relu(h)
            else:
                h = h @ layer.weight[e] + layer.bias[e]
        assert torch.allclose(q[e], h[..., 0], atol=1e-5)


def test_policy_log_std_clamped(net):
    policy = Policy(net, state_dim=6, action_dim=4)
    with torch.no_grad():
        policy.net[-1].bias.fill_(100.0)
    mean, log_std = policy(torch.zeros(2, 6))
    assert mean.shape == log_std.shape == (2, 4)
    assert torch.all(log_std == net.log_std_max)


def test_random_shift_is_a_replicate_padded_crop():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 10, 12, 3), dtype=torch.uint8, generator=g)
    assert random_shift(images, 0) is images
    shifted = random_shift(images, 2, torch.Generator().manual_seed(1))
    assert shifted.dtype == torch.uint8 and shifted.shape == images.shape
    padded = F.pad(images.permute(0, 3, 1, 2).float(), (2, 2, 2, 2), mode="replicate")
    shifts_seen = set()
    for i in range(6):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[i, :, dy : dy + 10, dx : dx + 12], shifted[i].permute(2, 0, 1))
        ]
        assert matches, f"sample {i} is not a crop of the padded image"
        shifts_seen.add(matches[0])
    assert len(shifts_seen) > 1  # per-sample offsets


def test_onehot_task_table_and_errors():
    table = task_embedding_table("onehot", ["a", "b", "c"], ["x", "y", "z"])
    assert np.array_equal(table, np.eye(3, dtype=np.float32))
    with pytest.raises(TextEncoderError, match="minilm"):
        make_text_encoder("/no/such/model")


def test_minilm_embeddings_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOFUME_CACHE_DIR", str(tmp_path))
    names = ["vase_forward", "vase_reset", "bench_forward"]
    texts = [
        "put the vase in the correct bin",
        "put the vase back in the centre of the table",
        "put the bench in the correct bin",
    ]
    table = task_embedding_table("minilm", names, texts)
    assert table.shape == (3, 384) and table.dtype == np.float32
    assert np.allclose(np.linalg.norm(table, axis=1), 1.0, atol=1e-4)
    sims = table @ table.T
    assert sims[0, 2] > sims[1, 2]  # "vase in the bin" is closer to "bench in the bin"
    cached = list((tmp_path / "text_embeddings").glob("*.npy"))
    assert len(cached) == 1
    # a second call is served from the cache (the file is what it returns, even if tampered)
    from robofume import text

    text._MEMORY_CACHE.clear()
    np.save(cached[0], np.full((3, 384), 7.0, np.float32))
    assert np.all(task_embedding_table("minilm", names, texts) == 7.0)


def test_local_clip_text_model(tmp_path, monkeypatch):
    """A CLIP text tower from a local directory (a tiny random one built here)."""
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModelWithProjection

    from robofume.text import minilm_path

    monkeypatch.setenv("ROBOFUME_CACHE_DIR", str(tmp_path / "cache"))
    tok = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    config = CLIPTextConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        projection_dim=16,
        max_position_embeddings=64,
        eos_token_id=tok.sep_token_id,
        bos_token_id=tok.cls_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model_dir = tmp_path / "clip"
    CLIPTextModelWithProjection(config).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    encoder = make_text_encoder(str(model_dir))
    assert encoder.is_clip
    table = task_embedding_table(str(model_dir), ["a", "b"], ["put the vase in", "hello"])
    assert table.shape == (2, 16)
    assert np.allclose(np.linalg.norm(table, axis=1), 1.0, atol=1e-4)
