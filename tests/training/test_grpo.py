"""GRPO pieces: advantages for variable-size groups, the clipped loss, masking, sampling."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from knapsack_rl.training.grpo import build_sequences, compute_advantages, grpo_loss  # noqa: E402


def test_advantages_variable_groups_by_hand():
    # group 0: size 3 [1, 0, 0]; group 1: size 1 [1]; group 2: all equal [1, 1];
    # group 3: size 4 [1, 0, 1, 0]
    gid = [0, 0, 0, 1, 2, 2, 3, 3, 3, 3]
    r = [1, 0, 0, 1, 1, 1, 1, 0, 1, 0]
    adv = compute_advantages(gid, r, scale=True, clip=5.0)
    eps = 1e-4
    m0, s0 = 1 / 3, math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)  # unbiased std
    s3 = math.sqrt(4 * 0.25 / 3)
    want = [
        (1 - m0) / (s0 + eps),
        -m0 / (s0 + eps),
        -m0 / (s0 + eps),
        0.0,
        0.0,
        0.0,
        0.5 / (s3 + eps),
        -0.5 / (s3 + eps),
        0.5 / (s3 + eps),
        -0.5 / (s3 + eps),
    ]
    np.testing.assert_allclose(adv, want, rtol=1e-12)
    unscaled = compute_advantages(gid, r, scale=False)
    np.testing.assert_allclose(unscaled[:3], [2 / 3, -1 / 3, -1 / 3])


def test_advantage_clipping_lone_success_in_big_group():
    gid = [0] * 93
    r = [1.0] + [0.0] * 92
    assert compute_advantages(gid, r, clip=None)[0] == pytest.approx(92 / math.sqrt(93), rel=1e-3)
    assert compute_advantages(gid, r, clip=5.0)[0] == 5.0
    assert compute_advantages(gid, r, clip=0)[0] > 9  # clip <= 0 disables


def test_loss_by_hand_token_mean_and_clip():
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
    old = torch.tensor([[-1.5, -1.0, 0.0], [-0.5, -0.2, -0.9]])
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, st = grpo_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.28)
    ratio = np.exp(logp.numpy() - old.numpy())
    a = adv.numpy()[:, None]
    tok = np.maximum(-a * ratio, -a * np.clip(ratio, 0.8, 1.28))
    want = (tok * mask.numpy()).sum() / mask.numpy().sum()
    assert float(loss) == pytest.approx(want, rel=1e-6)
    # token 0 of row 0: ratio e^0.5 = 1.65 > 1.28 with A > 0 -> clipped
    # row 1 token 2: ratio e^0.4 = 1.49 with A < 0 -> unclipped side wins (max)
    assert 0 < st["clip_frac"] < 1
    # explicit denominator (micro-batch accumulation)
    loss2, _ = grpo_loss(logp, old, adv, mask, denom=10.0)
    assert float(loss2) == pytest.approx(want * mask.numpy().sum() / 10.0, rel=1e-6)


def test_loss_gradient_is_policy_gradient_on_policy():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = grpo_loss(logp, logp.detach(), torch.tensor([3.0]), torch.ones(1, 2))
    loss.backward()
    np.testing.assert_allclose(logp.grad.numpy(), [[-1.5, -1.5]])  # -A / n_tokens


def test_kl_term():
    logp = torch.tensor([[-1.0, -1.0]])
    ref = torch.tensor([[-1.2, -0.7]])
    loss0, _ = grpo_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 2))
    loss1, st = grpo_loss(
        logp, logp, torch.tensor([0.0]), torch.ones(1, 2), ref_logp=ref, kl_coef=0.5
    )
    d = ref.numpy() - logp.numpy()
    k3 = np.exp(d) - d - 1
    assert float(loss0) == 0.0
    assert float(loss1) == pytest.approx(0.5 * k3.mean(), rel=1e-6)
    assert st["kl"] == pytest.approx(k3.mean(), rel=1e-6)


def test_masking_of_prompt_and_padding():
    b = build_sequences([[1, 5, 6], [1, 7]], [[8, 2], [9, 9, 9, 2]], pad_id=0)
    assert b.input_ids.tolist() == [[1, 5, 6, 8, 2, 0], [1, 7, 9, 9, 9, 2]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
    assert b.loss_mask.tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 0], [0, 1, 2, 3, 4, 5]]
    # targets t+1: prompt tokens and padding carry no loss
    assert b.target_mask().tolist() == [[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]]
    # a loss on a padded position must not change the result
    logp = torch.zeros(2, 5)
    logp[0, 4] = 100.0  # padding target of row 0
    logp[0, 0] = -100.0  # prompt target of row 0
    loss, _ = grpo_loss(logp, torch.zeros(2, 5), torch.tensor([1.0, 1.0]), b.target_mask())
    clean, _ = grpo_loss(
        torch.zeros(2, 5), torch.zeros(2, 5), torch.tensor([1.0, 1.0]), b.target_mask()
    )
    assert float(loss) == float(clean)


def _tiny():
    from knapsack_rl.training.model import CharTokenizer, build_builtin_model

    tok = CharTokenizer("0123456789+-=")
    return build_builtin_model(tok, n_layer=1, n_embd=32, n_head=2, n_inner=64, seed=0), tok


def test_sampler_cache_matches_full_forward_and_groups():
    from knapsack_rl.training.grpo import token_logprobs
    from knapsack_rl.training.sampler import generate

    torch.set_num_threads(1)
    model, tok = _tiny()
    prompts = [tok.prompt_ids(p) for p in ["1+2=", "13+4=", "7="]]
    g = generate(
        model,
        prompts,
        [3, 1, 2],
        max_new_tokens=5,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        temperature=0.0,
        max_batch_tokens=20,
    )
    assert g.prompt_index == [0, 0, 0, 1, 2, 2]
    assert g.chunks > 1  # the memory cap split the batch
    for k, comp in enumerate(g.completions):
        ids = list(prompts[g.prompt_index[k]])
        want = []
        for _ in range(5):
            t = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            want.append(t)
            ids.append(t)
            if t == tok.eos_token_id:
                break
        assert comp == want
    # sampled: batched log-probs equal per-sequence ones
    gen = torch.Generator().manual_seed(0)
    g = generate(
        model,
        prompts,
        [2, 2, 2],
        max_new_tokens=4,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        generator=gen,
    )
    b = build_sequences([prompts[i] for i in g.prompt_index], g.completions, tok.pad_token_id)
    with torch.no_grad():
        lp = token_logprobs(model, b)
        for k, comp in enumerate(g.completions):
            ids = torch.tensor([prompts[g.prompt_index[k]] + comp])
            single = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1).gather(
                -1, ids[0, 1:, None]
            )[:, 0]
            n = ids.shape[1] - 1
            m = b.target_mask()[k, :n] > 0
            torch.testing.assert_close(lp[k, :n][m], single[m], atol=1e-5, rtol=1e-5)


def test_pass_at_k():
    from knapsack_rl.training.evaluate import pass_at_k

    assert pass_at_k(8, 0, 4) == 0.0
    assert pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(8, 2, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)
    assert pass_at_k(5, 4, 2) == 1.0
