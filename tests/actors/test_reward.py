"""The reward role: scorers chosen by config, real Ray actors, a real local HTTP service.

Parity: LearnedScorer equals the ScalarModel's forward at the last token; Llama2PairScorer equals
algorithms.combine_safety_helpfulness / logit on the same sigmoid scores.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import ray
import torch

from actors.config import RewardConfig, ScorerConfig
from actors.reward import start_reward_actor
from actors.http_scorer import HttpScorer, RewardServiceError
from actors.learned_scorer import LearnedScorer, Llama2PairScorer
from actors.scorers import FunctionScorer, ScorerError, ScoreRequest, build_scorer
from algorithms import combine_safety_helpfulness, logit
from model import ModelArgs, ScalarModel, Transformer, save_pretrained
from model.precision import bf16_autocast_fast

ARGS = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=128, multiple_of=32, max_seq_len=64)
RULES = "tests.actors.reward_rules"


def _scalar_checkpoint(path, seed: int) -> ScalarModel:
    torch.manual_seed(seed)
    model = ScalarModel(ARGS)
    with torch.no_grad():  # a visible spread of rewards: the random head alone gives values near 0
        model.score.weight.mul_(20.0)
    save_pretrained(model, path)
    return model


@pytest.fixture(scope="module")
def rms(tmp_path_factory):
    root = tmp_path_factory.mktemp("rms")
    helpful = _scalar_checkpoint(root / "helpfulness", seed=1)
    safety = _scalar_checkpoint(root / "safety", seed=2)
    return {"helpfulness": (str(root / "helpfulness"), helpful), "safety": (str(root / "safety"), safety)}


@pytest.fixture(scope="module")
def requests_() -> list[ScoreRequest]:
    rng = np.random.default_rng(0)
    out = []
    for i, (p_len, r_len) in enumerate([(5, 3), (9, 12), (2, 1), (14, 20), (7, 0), (3, 30)]):
        out.append(ScoreRequest(
            prompt_tokens=[1, *rng.integers(3, ARGS.vocab_size, p_len - 1).tolist()],
            response_tokens=rng.integers(3, ARGS.vocab_size, r_len).tolist(),
            prompt_messages=[{"role": "user", "content": f"question {i}"}],
            response_text="x" * (r_len + i),
            is_safety=i in (1, 4),
            meta_json=json.dumps({"bonus": 0.5 * i}),
        ))
    return out


def _direct_last_token(model: ScalarModel, req: ScoreRequest) -> float:
    tokens = torch.tensor([req.prompt_tokens + req.response_tokens])  # [1, T], no padding
    with torch.no_grad():
        return float(model(tokens)[0, -1])


# ------------------------------------------------------------------------------------------------
# the HTTP service
# ------------------------------------------------------------------------------------------------


def _http_expected(requests: list[ScoreRequest]) -> np.ndarray:
    return np.array([0.5 * len(r.response_text) + 2.0 * r.is_safety for r in requests])


class _Handler(BaseHTTPRequestHandler):
    calls: Counter = Counter()

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        _Handler.calls[self.path] += 1
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert data["prompts"][0][-1]["role"] == "user"  # messages travel as given
        rewards = [0.5 * len(t) + 2.0 * s for t, s in zip(data["responses"], data["is_safety"])]
        if self.path == "/busy" or (self.path == "/flaky" and _Handler.calls[self.path] == 1):
            return self._send(503, b'{"error": "busy"}')
        answers = {
            "/not_json": b"<html>oops</html>",
            "/no_key": json.dumps({"scores": rewards}).encode(),
            "/short": json.dumps({"rewards": rewards[:-1]}).encode(),
            "/text": json.dumps({"rewards": ["good"] * len(rewards)}).encode(),
        }
        if self.path == "/bad_request":
            return self._send(400, b'{"error": "no"}')
        self._send(200, answers.get(self.path, json.dumps({"rewards": rewards}).encode()))


@pytest.fixture(scope="module")
def service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _free_port_url() -> str:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/score"


@pytest.fixture()
def dead_url() -> str:
    return _free_port_url()


# ------------------------------------------------------------------------------------------------
# in-process scorers
# ------------------------------------------------------------------------------------------------


def test_learned_scorer_equals_forward_at_the_last_token(rms, requests_):
    path, model = rms["helpfulness"]
    out = LearnedScorer(path, batch_size=4).score(requests_)  # 2 padded batches of mixed lengths
    direct = np.array([_direct_last_token(model, r) for r in requests_])
    np.testing.assert_allclose(out["reward"], direct, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["score"], 1 / (1 + np.exp(-direct)), rtol=1e-5)
    assert np.ptp(direct) > 0.1  # the checkpoints really differ per sample


def test_learned_scorer_in_bf16_ranks_as_fp32_does(rms, requests_):
    path, model = rms["helpfulness"]
    direct = np.array([_direct_last_token(model, r) for r in requests_])
    half = LearnedScorer(path, batch_size=4, autocast_bf16=True).raw(requests_)
    assert not np.array_equal(half, direct)  # the forward really ran in bf16
    np.testing.assert_allclose(half, direct, atol=0.05 * np.ptp(direct))
    i, j = np.triu_indices(len(direct), k=1)
    assert (np.sign(half[i] - half[j]) == np.sign(direct[i] - direct[j])).mean() >= 0.9


def test_learned_scorer_resolves_auto_on_its_device(rms):
    path, _ = rms["helpfulness"]
    assert LearnedScorer(path, autocast_bf16="auto").autocast_bf16 is bf16_autocast_fast("cpu")
    with pytest.raises(ValueError, match=r"LearnedScorer\(.*\) autocast_bf16: expected true, false or 'auto'"):
        LearnedScorer(path, autocast_bf16="fast")


def test_pair_scorer_follows_the_piecewise_rule_of_algorithms(rms, requests_):
    (hp, hm), (sp, sm) = rms["helpfulness"], rms["safety"]
    h = torch.sigmoid(torch.tensor([_direct_last_token(hm, r) for r in requests_], dtype=torch.float64))
    s = torch.sigmoid(torch.tensor([_direct_last_token(sm, r) for r in requests_], dtype=torch.float64))
    is_safety = torch.tensor([r.is_safety for r in requests_])
    ranked = s[~is_safety].sort().values
    mid = len(ranked) // 2  # halfway between two scores: both branches of "Rs < threshold" occur
    threshold = float(ranked[mid - 1] + ranked[mid]) / 2
    out = Llama2PairScorer(hp, sp, threshold=threshold, batch_size=3).score(requests_)

    np.testing.assert_allclose(out["helpfulness"], h.numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["safety"], s.numpy(), rtol=1e-5)
    expected = combine_safety_helpfulness(s, h, is_safety, threshold)
    np.testing.assert_allclose(out["combined"], expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["reward"], logit(expected).numpy(), rtol=1e-4)
    # the rule itself, written out: Rs on safety prompts or when Rs < threshold, else Rh
    use_safety = is_safety.numpy() | (out["safety"] < threshold)
    assert use_safety.any() and (~use_safety).any()
    np.testing.assert_array_equal(out["combined"], np.where(use_safety, out["safety"], out["helpfulness"]))


def test_learned_scorer_refuses_a_language_model_and_bad_tokens(tmp_path, rms, requests_):
    torch.manual_seed(0)
    save_pretrained(Transformer(ARGS), tmp_path / "lm")
    with pytest.raises(ScorerError, match="holds a Transformer; a reward model checkpoint must be a ScalarModel"):
        LearnedScorer(str(tmp_path / "lm"))
    scorer = LearnedScorer(rms["helpfulness"][0])
    with pytest.raises(ScorerError, match="request 1 has 70 tokens, more than the model's max_seq_len=64"):
        scorer.score([requests_[0], ScoreRequest([1] * 40, [5] * 30)])
    with pytest.raises(ScorerError, match=r"request 0 has token ids outside \[0, vocab_size=128\)"):
        scorer.score([ScoreRequest([1, 500], [3])])
    with pytest.raises(ScorerError, match="ScoreRequest.response_tokens: expected a list of int token ids"):
        ScoreRequest([1, 2], ["a"])


def test_function_scorer_imports_the_target_and_checks_its_answer(requests_):
    out = FunctionScorer(f"{RULES}:length_reward", {"scale": 0.2}).score(requests_)
    expected = [0.2 * len(r.response_text) - r.is_safety + 0.5 * i for i, r in enumerate(requests_)]
    np.testing.assert_allclose(out["reward"], expected)
    dotted = FunctionScorer(f"{RULES}.length_reward").score(requests_[:2])["reward"]
    np.testing.assert_allclose(dotted, [0.1 * len(r.response_text) - r.is_safety + 0.5 * i for i, r in enumerate(requests_[:2])])

    with pytest.raises(ScorerError, match="cannot import module 'tests.actors.no_such_rules'"):
        FunctionScorer("tests.actors.no_such_rules:fn")
    with pytest.raises(ScorerError, match=f"module '{RULES}' has no attribute 'missing'"):
        FunctionScorer(f"{RULES}:missing")
    with pytest.raises(ScorerError, match="is a int, not a callable"):
        FunctionScorer(f"{RULES}:NOT_CALLABLE")
    with pytest.raises(ScorerError, match=f"reward function {RULES}:one_too_few: returned 5 rewards for 6 requests"):
        FunctionScorer(f"{RULES}:one_too_few").score(requests_)
    with pytest.raises(ScorerError, match="reward 0 is 'high'; expected a finite number"):
        FunctionScorer(f"{RULES}:not_numbers").score(requests_)


def test_http_scorer_batches_and_retries_a_busy_service(service, requests_):
    _Handler.calls.clear()
    out = HttpScorer(f"{service}/score", timeout_s=5, retries=0, batch_size=4).score(requests_)
    np.testing.assert_allclose(out["reward"], _http_expected(requests_))
    assert _Handler.calls["/score"] == 2  # 6 requests in batches of 4
    out = HttpScorer(f"{service}/flaky", timeout_s=5, retries=1, batch_size=8).score(requests_)
    np.testing.assert_allclose(out["reward"], _http_expected(requests_))
    assert _Handler.calls["/flaky"] == 2  # one 503, then the answer


@pytest.mark.parametrize("path,message", [
    ("/not_json", "answered malformed data: not JSON"),
    ("/no_key", "answered malformed data: expected an object with key 'rewards'"),
    ("/short", "answered malformed data: 'rewards' must be a list of 6 numbers, got 5 values"),
    ("/text", r"answered malformed data: rewards\[0\] is 'good', expected a finite number"),
    ("/bad_request", "answered HTTP 400"),
    ("/busy", "failed after 3 attempt\\(s\\): HTTP 503"),
])
def test_http_scorer_names_the_url_on_a_bad_answer(service, requests_, path, message):
    with pytest.raises(RewardServiceError, match=f"reward service {service}{path} {message}".replace("?", r"\?")):
        HttpScorer(f"{service}{path}", timeout_s=5, retries=2).score(requests_)


def test_http_scorer_fails_fast_and_clearly_on_a_dead_endpoint(dead_url, requests_):
    start = time.perf_counter()
    with pytest.raises(RewardServiceError, match=f"reward service {dead_url} failed after 2 attempt\\(s\\): unreachable"):
        HttpScorer(dead_url, timeout_s=2, retries=1).score(requests_)
    assert time.perf_counter() - start < 2.0


def test_build_scorer_names_the_known_kinds():
    with pytest.raises(ScorerError, match=r"unknown scorer kind 'magic'; expected one of \['learned', 'llama2', 'function', 'http'\]"):
        build_scorer(ScorerConfig(kind="magic"))


# ------------------------------------------------------------------------------------------------
# Ray actors: only the scorer config changes
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reward_actors(ray_cluster, rms, service):
    """One reward actor per scorer config, all started at once; only `RewardConfig.scorer` differs."""
    hp, sp = rms["helpfulness"][0], rms["safety"][0]
    scorers = {
        "learned": ScorerConfig(kind="learned", path=hp, batch_size=4),
        "llama2": ScorerConfig(kind="llama2", helpfulness_path=hp, safety_path=sp, safety_threshold=0.15),
        "function": ScorerConfig(kind="function", target=f"{RULES}:length_reward", extra={"scale": 0.2}),
        "http": ScorerConfig(kind="http", url=f"{service}/score", timeout_s=5, retries=0, batch_size=4),
        "dead": ScorerConfig(kind="http", url=_free_port_url(), timeout_s=1, retries=0),
    }
    actors = {k: start_reward_actor(RewardConfig(scorer=c, num_cpus=0.25)) for k, c in scorers.items()}
    yield actors, scorers
    for a in actors.values():
        ray.kill(a)


def test_reward_actor_switches_scorer_by_config_only(reward_actors, rms, requests_):
    actors, _ = reward_actors
    (hp, hm), (sp, _) = rms["helpfulness"], rms["safety"]
    kinds = ("learned", "llama2", "function", "http")
    results = dict(zip(kinds, ray.get([actors[k].score.remote(requests_) for k in kinds])))  # one gather

    np.testing.assert_allclose(results["learned"]["reward"], [_direct_last_token(hm, r) for r in requests_],
                               rtol=1e-5, atol=1e-5)
    local_pair = Llama2PairScorer(hp, sp, threshold=0.15).score(requests_)
    assert set(results["llama2"]) == set(local_pair)
    for key, values in local_pair.items():
        np.testing.assert_allclose(results["llama2"][key], values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["function"]["reward"],
                               [0.2 * len(r.response_text) - r.is_safety + 0.5 * i for i, r in enumerate(requests_)])
    np.testing.assert_allclose(results["http"]["reward"], _http_expected(requests_))
    assert ray.get([actors[k].scorer_kind.remote() for k in kinds]) == list(kinds)


def test_reward_actor_threads_follow_config_or_cpu_share(ray_cluster, rms):
    hp = rms["helpfulness"][0]
    scorer = ScorerConfig(kind="learned", path=hp)
    actors = [start_reward_actor(RewardConfig(scorer=scorer, num_cpus=0.25, torch_threads=t)) for t in (2, 0)]
    try:
        assert ray.get([a.torch_threads.remote() for a in actors]) == [2, 1]  # 0: floor(0.25) -> at least 1
    finally:
        for a in actors:
            ray.kill(a)
    with pytest.raises(ValueError, match="reward.torch_threads must be >= 0"):
        start_reward_actor(RewardConfig(scorer=scorer, torch_threads=-1))


def test_reward_actor_raises_the_service_error_of_a_dead_endpoint(reward_actors, requests_):
    actors, scorers = reward_actors
    with pytest.raises(RewardServiceError, match=f"reward service {scorers['dead'].url} failed after 1 attempt"):
        ray.get(actors["dead"].score.remote(requests_))
