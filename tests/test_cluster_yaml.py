"""cluster.yaml is a valid Ray cluster launcher config (Ray's own JSON schema) with no training knobs."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray.autoscaler
import yaml

from pipelines.config import Config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


def _cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _keys(node: object) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def test_cluster_yaml_validates_against_rays_schema():
    schema = json.loads(SCHEMA.read_text())
    cluster = _cluster()
    jsonschema.validate(cluster, schema)  # raises ValidationError naming the offending path
    # the schema cannot express these cross-references; `ray up` checks them
    assert cluster["head_node_type"] in cluster["available_node_types"]
    workers = {k: v for k, v in cluster["available_node_types"].items() if k != cluster["head_node_type"]}
    assert workers and all(v["resources"].get("GPU", 0) > 0 for v in workers.values())
    assert max(v["max_workers"] for v in workers.values()) <= cluster["max_workers"]


def test_the_schema_really_rejects_a_broken_config():
    schema = json.loads(SCHEMA.read_text())
    broken = _cluster()
    broken["available_node_types"]["gpu_worker"]["resources"]["GPU"] = "eight"
    try:
        jsonschema.validate(broken, schema)
    except jsonschema.ValidationError as e:
        assert list(e.absolute_path) == ["available_node_types", "gpu_worker", "resources", "GPU"]
    else:
        raise AssertionError("Ray's schema accepted a non-integer GPU count")


def test_cluster_yaml_installs_the_project_and_holds_no_training_knobs():
    cluster = _cluster()
    setup = " ".join(cluster["setup_commands"])
    assert "pip install -e '.[gpu]'" in setup
    assert any("ray start --head" in c for c in cluster["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in c for c in cluster["worker_start_ray_commands"])
    # model, ppo, sft, reward, ... ("resources" is also Ray's own node key, so it is not a training key here)
    training_keys = set(Config.__dataclass_fields__) - {"run_dir", "resources"}
    assert not (_keys(cluster) & training_keys)
