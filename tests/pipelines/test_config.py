"""Every Hydra option composes and validates; bad overrides fail with the offending key named."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import STAGE_ORDER, Config, world_bundle_config
from pipelines.registry import STAGES
from pipelines.stages import STAGE_MODULES
from pipelines.validation import CONF_DIR, ConfigError, compose_config

GROUPS = ("model", "resources", "reward", "data", "logging", "stage", "pipeline", "profile")
REPO = Path(__file__).resolve().parents[2]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.fixture()
def files_data(tmp_path) -> list[str]:
    """Existing (empty) user files for data=files; validation checks existence, not content."""
    overrides = []
    for name in ("pretrain_text", "sft", "helpfulness_pairs", "safety_pairs", "prompts", "eval_prompts"):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("")
        overrides.append(f"data.files.{name}=[{path}]")
    return overrides


def _needs(group: str, option: str, tmp_path: Path, files_data: list[str]) -> list[str]:
    """Extra overrides an option requires to be runnable (a checkpoint dir, user files)."""
    if group == "model" and option != "tiny":
        ckpt = tmp_path / "ckpt"
        ckpt.mkdir(exist_ok=True)
        return [f"model.init_path={ckpt}"]
    if group == "data" and option == "files":
        return files_data
    return []


def test_every_group_has_options_and_the_stage_group_matches_the_stage_list():
    for group in GROUPS:
        assert _options(group), f"conf/{group}/ has no options"
    assert set(_options("stage")) == set(STAGE_ORDER) == set(STAGES) == set(STAGE_MODULES)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes_and_validates(group, option, tmp_path, files_data):
    run = [] if group in ("stage", "pipeline") else ["pipeline=llama2"]  # every stage's checks apply
    cfg = compose_config([f"run_dir={tmp_path / 'run'}", f"{group}={option}", *run,
                          *_needs(group, option, tmp_path, files_data)])
    assert isinstance(cfg, Config)
    if group == "stage":
        assert cfg.stage == option and cfg.pipeline is None
    if group == "pipeline":
        assert cfg.pipeline == option and cfg.stage is None


def test_paper_sizes_on_gpu_resources_compose_with_paper_values(tmp_path):
    ckpt = tmp_path / "Llama-2-70b-hf"
    ckpt.mkdir()
    cfg = compose_config([f"run_dir={tmp_path}", "pipeline=llama2", "model=llama2_70b", "resources=multi_node",
                          f"model.init_path={ckpt}"])
    assert (cfg.model.size, cfg.model.init_path) == ("70b", str(ckpt))
    assert cfg.ppo.beta == 0.005 and cfg.reward_models.optim.lr == 5e-6 and cfg.pretrain.optim.lr == 1.5e-4
    assert cfg.resources.generator.max_model_len == 4096  # interpolated from model.max_seq_len
    assert cfg.resources.policy.num_workers == 8 and cfg.reward.num_gpus == 1.0
    # on GPUs the KV cache is a fraction of device memory, not the CPU default's fixed bytes
    assert cfg.resources.generator.kv_cache_bytes == 0 and cfg.resources.generator.gpu_memory_utilization == 0.85
    cfg = compose_config([f"run_dir={tmp_path}", "stage=ppo", "model=llama2_7b", "resources=gpu_node",
                          f"model.init_path={ckpt}"])
    assert (cfg.ppo.beta, cfg.ppo.optim.lr, cfg.ppo.mini_batch_size) == (0.01, 1e-6, 64)
    assert cfg.resources.generator.kv_cache_bytes == 0
    # the paper's context distillation: one preprompted answer, kept when the RM scores it better
    assert (cfg.context_distillation.samples, cfg.context_distillation.min_gain) == (1, 0.0)
    assert cfg.reward.scorer.helpfulness_path == f"{tmp_path}/checkpoints/rm_helpfulness"


def test_tiny_defaults_are_the_schema_defaults(tmp_path):
    cfg = compose_config([f"run_dir={tmp_path}", "pipeline=llama2"])
    assert cfg.model.size == "tiny" and cfg.reward.scorer.kind == "llama2" and cfg.data.source == "world"
    assert cfg.ppo.kl_estimator == "k1" and cfg.ppo.clip == 0.2 and cfg.ppo.whiten_scores is True
    assert cfg.logging.log_dir == f"{tmp_path}/tb"
    # bf16 wherever the device has native bf16 matmuls, decided by each actor; the RMs follow the
    # model's setting, on both cores of the dev box
    assert cfg.model.autocast_bf16 == "auto" and cfg.reward.scorer.autocast_bf16 == "auto"
    assert cfg.reward.torch_threads == 2
    assert cfg.resources.generator.torch_threads == 2  # generators run while learners wait: both cores
    assert cfg.reward_models.shared_prefix is True and cfg.pretrain.batch_size == 8
    on = compose_config([f"run_dir={tmp_path}", "pipeline=llama2", "model.autocast_bf16=true"])
    assert on.reward.scorer.autocast_bf16 is True
    off = compose_config([f"run_dir={tmp_path}", "pipeline=llama2", "model.autocast_bf16=false"])
    assert off.reward.scorer.autocast_bf16 is False
    bundle = world_bundle_config(compose_config([f"run_dir={tmp_path}", "stage=data",
                                                 "data.world.pretrain_docs=7", "data.world_scale=0.5"]).data)
    assert bundle.pretrain_docs == 4  # round(7 * 0.5)


@pytest.mark.parametrize("overrides,key", [
    (["ppo.foo=1"], "ppo.foo"),                                  # unknown key
    (["ppo.iterations=abc"], "ppo.iterations"),                  # wrong type
    (["data.world.pretrain_docs=many"], "data.world.pretrain_docs"),
    (["resources.policy.num_cpus=half"], "resources.policy.num_cpus"),
    (["stage=bogus"], "stage"),                                  # unknown stage (group option)
])
def test_unknown_keys_and_wrong_types_name_the_key(tmp_path, overrides, key):
    stage = [] if key == "stage" else ["stage=ppo"]
    with pytest.raises(ConfigError, match=key):
        compose_config([f"run_dir={tmp_path}", *overrides, *stage])


@pytest.mark.parametrize("overrides,expected", [
    (["stage=ppo", "ppo.mini_batch_size=7"], "ppo.mini_batch_size: 7 does not divide prompts_per_iteration"),
    (["stage=ppo", "resources.critic.num_workers=3"], "ppo.mini_batch_size: 16 is not divisible by resources.critic.num_workers=3"),
    (["stage=sft", "resources.policy.num_workers=3"], "sft.batch_size: 16 is not divisible by resources.policy.num_workers=3"),
    (["stage=reward_models", "resources.reward_model.num_workers=5"], "reward_models.batch_size: 32 is not divisible"),
    (["stage=rejection_sampling", "rejection_sampling.rounds=3", "rejection_sampling.temperatures=[0.8,1.0]"],
     "rejection_sampling.temperatures: 2 values for rounds=3"),
    (["stage=rejection_sampling", "rejection_sampling.temperatures=[0.0]"], r"rejection_sampling.temperatures\[0\]: must be > 0"),
    (["stage=rejection_sampling", "rejection_sampling.prompt_kinds=[helpful,unsafe]"],
     r"rejection_sampling.prompt_kinds: expected a non-empty list of \['helpful', 'borderline', 'adversarial'\]"),
    (["stage=rejection_sampling", "rejection_sampling.prompt_kinds=[]"], "rejection_sampling.prompt_kinds: expected"),
    (["stage=ppo", "ppo.temperature=0"], "ppo.temperature: must be > 0"),
    (["stage=ppo", "ppo.max_new_tokens=500"], "ppo.max_new_tokens: max_prompt_len \\(128\\) \\+ max_new_tokens \\(500\\) exceeds"),
    (["stage=ppo", "resources.generator.max_model_len=1024"], "resources.generator.max_model_len: 1024 exceeds model.max_seq_len=512"),
    (["stage=ppo", "ppo.kl_estimator=k9"], "ppo.kl_estimator: 'k9' is not one of"),
    (["stage=ppo", "reward=learned", "reward.scorer.path=/no/such/rm"], "reward.scorer.path: path '/no/such/rm' does not exist"),
    (["stage=ppo", "reward=function", "reward.scorer.target=no_such_pkg.rules:fn"], "reward.scorer.target: .*cannot import module 'no_such_pkg.rules'"),
    (["stage=ppo", "reward=function", "reward.scorer.target=pipelines.oracle_reward:nope"], "reward.scorer.target: .*has no attribute 'nope'"),
    (["stage=ppo", "reward=http", "reward.scorer.url=ftp://x"], "reward.scorer.url: expected an http"),
    (["stage=ppo", "reward.torch_threads=-2"], "reward.torch_threads: must be >= 0"),
    (["stage=ppo", "resources.generator.torch_threads=-1"], "resources.generator.torch_threads: must be >= 0"),
    (["stage=sft", "model.autocast_bf16=sometimes"], "model.autocast_bf16: expected true, false or 'auto', got 'sometimes'"),
    (["stage=ppo", "reward.scorer.autocast_bf16=2"], "reward.scorer.autocast_bf16: expected true, false or 'auto', got 2"),
    (["stage=ppo", "reward.scorer.kind=magic"], "reward.scorer.kind: 'magic' is not one of \\['learned', 'llama2', 'function', 'http'\\]"),
    (["stage=sft", "model=llama2_7b"], "model.init_path: is required for size '7b'"),
    (["stage=sft", "model.init_path=/no/such/ckpt"], "model.init_path: path '/no/such/ckpt' does not exist"),
    (["stage=sft", "data=files"], "data.files.sft: is required with data=files for stage sft"),
    (["stage=sft", "data=files", "data.files.sft=[/no/such.jsonl]"], r"data.files.sft\[0\]: path '/no/such.jsonl' does not exist"),
    (["stage=data", "data.world.sft_noise=2.0"], "data.world: BundleConfig.sft_noise must be in"),
    (["stage=context_distillation", "context_distillation.min_gain=1.5"],
     r"context_distillation.min_gain: the safety score is in \[0, 1\]"),
    (["stage=gatt", "gatt.max_turns=1"], "gatt.max_turns: Ghost Attention needs multi-turn"),
    (["stage=gatt", "gatt.min_depth=0"], r"gatt.min_depth: must be in \[1, gatt.max_turns=8\]"),
    (["stage=gatt", "gatt.choose=best"], r"gatt.choose: expected one of \['first', 'likelihood'\], got 'best'"),
    (["stage=reward_models", "reward_models.model_pairs.prompts=8", "reward_models.model_pairs.samples=1"],
     "reward_models.model_pairs.samples: need at least 2 answers"),
    (["stage=reward_models", "reward_models.model_pairs.prompts=8", "reward_models.model_pairs.kinds=[helpful]"],
     "reward_models.model_pairs.kinds: expected a non-empty list of distinct"),
    (["stage=reward_models", "reward_models.model_pairs.prompts=8", "reward_models.model_pairs.temperatures=[0.7,0]"],
     r"reward_models.model_pairs.temperatures\[1\]: must be > 0"),
    (["stage=reward_models", "reward_models.model_pairs.prompts=8", "data=files",
      "data.files.helpfulness_pairs=[/x]", "data.files.safety_pairs=[/y]"],
     "reward_models.model_pairs.prompts: labelling the policy's answers needs the world's oracle"),
    (["stage=reward_models", "reward_models.model_pairs.prompts=-1"], "reward_models.model_pairs.prompts: must be >= 0"),
    (["stage=evaluate", "evaluate.turns=[4,2]"], "evaluate.turns: expected increasing"),
    (["stage=pretrain", "pretrain.seq_len=4096"], "pretrain.seq_len: must be in \\[2, model.max_seq_len=512\\]"),
    (["stage=pretrain", "pretrain.optim.schedule=linear"], "pretrain.optim.schedule: 'linear' is not one of"),
    (["resources.policy.num_gpus=1.5", "stage=sft"], "resources.policy.num_gpus: Ray accepts fractions only below 1"),
    ([], "stage: nothing to run"),
    (["stage=sft", "pipeline=llama2"], "stage: stage=sft and pipeline=llama2 are both set"),
])
def test_impossible_combinations_fail_naming_the_key(tmp_path, overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        compose_config([f"run_dir={tmp_path}", *overrides])


def test_all_problems_are_reported_at_once_and_other_stages_are_not_checked(tmp_path):
    with pytest.raises(ConfigError) as err:
        compose_config([f"run_dir={tmp_path}", "stage=ppo", "ppo.clip=0", "ppo.gamma=2"])
    assert [p.split(":")[0] for p in err.value.problems] == ["ppo.clip", "ppo.gamma"]
    # a single-stage run is not blocked by another stage's knobs
    cfg = compose_config([f"run_dir={tmp_path}", "stage=sft", "ppo.mini_batch_size=7"])
    assert cfg.ppo.mini_batch_size == 7


def test_missing_run_dir_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"run_dir: is required \(set run_dir=\.\.\.\)"):
        compose_config(["stage=sft"])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_rejects_a_bad_combination_before_running_and_keeps_hydra_files_in_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    proc = _cli(f"run_dir={run_dir}", "stage=ppo", "ppo.mini_batch_size=7", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "ppo.mini_batch_size: 7 does not divide" in proc.stderr
    # Hydra's own outputs live under run_dir/.hydra; nothing is written into the working directory
    assert list((run_dir / ".hydra").glob("*/config.yaml"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not (run_dir / "checkpoints").exists()  # no stage started


def test_cli_names_an_unknown_key(tmp_path):
    proc = _cli(f"run_dir={tmp_path / 'run'}", "stage=ppo", "ppo.bogus=1", cwd=tmp_path)
    assert proc.returncode != 0
    assert "ppo.bogus" in proc.stderr
