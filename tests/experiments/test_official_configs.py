"""configs/official and the docs/reproducing.md table are what the experiment matrix generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from geokt_plugin import experiments
from geokt_plugin.experiments import Tagged, load_config_document

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
OFFICIAL = ROOT / "configs" / "official"
REGENERATE = "regenerate with `python -m geokt_plugin.experiments configs`"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT / "configs"))


def test_configs_exist():
    """The glob found every official config (an empty parametrisation would pass vacuously)."""
    names = {_rel(p) for p in CONFIGS}
    official = {f"official/{spec.relpath}" for spec in experiments.all_specs()}
    assert official <= names
    assert {n.split("/")[1] for n in official} == {"cifar10", "fashion_mnist"}


def test_official_configs_match_their_generator():
    """configs/official is written by the experiment matrix; a hand edit (or a generator change not re-run) fails."""
    files = experiments.generated_files()
    on_disk = {p for p in OFFICIAL.rglob("*") if p.is_file()}
    assert on_disk == set(files), sorted(str(p) for p in on_disk ^ set(files))[:5]
    stale = [str(p) for p, text in files.items() if p.read_text() != text]
    assert not stale, f"{REGENERATE}: {stale[:5]}"
    # docs/reproducing.md lists every official config, one row each
    reproducing = experiments.REPRODUCING.read_text()
    assert experiments.with_reproducing_table(reproducing) == reproducing, REGENERATE
    for path in on_disk:
        if path.suffix == ".yaml":
            assert f"(../{path.relative_to(ROOT)})" in reproducing, path


def test_official_students_name_their_instructor_run_dir():
    """Every src_ckpt points at the best.pt of an instructor config of the same dataset, seed 0."""
    for path in OFFICIAL.rglob("*.yaml"):
        text = path.read_text()
        for line in text.splitlines():
            if "src_ckpt:" not in line:
                continue
            ckpt = Path(line.split("'")[1])
            assert ckpt.name == "best.pt" and ckpt.parent.name == "seed0", (path, ckpt)
            instructor = OFFICIAL / ckpt.parent.parent.relative_to("runs").with_suffix(".yaml")
            assert instructor.is_file() and instructor.parent.name == "instructors", (path, instructor)


def _train_dataset(path: Path) -> dict:
    """The builder and kwargs of a config's training set, read without building it."""
    train = load_config_document(path)["datasets"]["train"]
    assert isinstance(train, Tagged) and train.tag == "!import_call"
    return {"builder": train.value["key"], **train.value["init"]["kwargs"]}


def test_limited_data_fractions_are_nested_subsets():
    """The limited-data configs differ only in `fraction`, so their training sets are nested (geokt_plugin.data)."""
    for dataset, fractions in (("fashion_mnist", [0.5, 1.0]), ("cifar10", [0.1, 0.2, 0.5, 1.0])):
        kwargs = {}
        paths = sorted((OFFICIAL / dataset / "theodorakopoulos2021" / "limited_data").glob("ce-*.yaml"))
        if dataset == "fashion_mnist":  # 100 %: the main cell's CE
            paths.append(OFFICIAL / dataset / "theodorakopoulos2021" / "smaller_model" / "ce-resnet8.yaml")
        for path in paths:
            train = _train_dataset(path)
            kwargs[train.pop("fraction", 1.0)] = train  # 100 %: no fraction, the same text as smaller_model
        assert sorted(kwargs) == fractions
        assert all(k == kwargs[1.0] for k in kwargs.values())


def test_geometric_losses_use_the_loss_table_defaults():
    """Every GeoKT term writes its loss's registry key and the LossSpec defaults, as the table says."""
    from geokt_plugin.losses.spec import LOSS_SPECS

    by_key = {s.key: s.knobs for s in LOSS_SPECS.values()}
    seen = set()
    for path in OFFICIAL.rglob("*.yaml"):
        terms = load_config_document(path)["train"]["criterion"]["kwargs"]["sub_terms"]
        for term in terms.values():
            key, kwargs = term["criterion"]["key"], term["criterion"].get("kwargs", {})
            if key in by_key:
                seen.add(key)
                assert {k: kwargs[k] for k in by_key[key]} == by_key[key], (path, key)
    assert seen == set(by_key)


def test_cli_check_passes_and_help_works():
    """`python -m geokt_plugin.experiments configs --check` finds nothing to regenerate."""
    cmd = [sys.executable, "-m", "geokt_plugin.experiments"]
    check = subprocess.run([*cmd, "configs", "--check"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    help_ = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=300)
    assert help_.returncode == 0 and "configs" in help_.stdout and "claims" in help_.stdout


def _dst_and_src(path: Path) -> tuple[str, str | None]:
    models = load_config_document(path)["models"]
    return models["student_model"]["dst_ckpt"], models.get("teacher_model", {}).get("src_ckpt")


def test_dst_ckpt_is_the_run_dirs_best_pt_and_chains_instructors():
    """dst_ckpt (where torchdistill's script saves the student) is the best.pt geokt-train writes with the default
    run directory, so each src_ckpt is the dst_ckpt of an instructor config, for either tool."""
    dsts = {}
    for spec in experiments.all_specs():
        dst, _ = _dst_and_src(OFFICIAL / spec.relpath)
        seed = experiments.matrix.SWEEP_SEED if spec.experiment in ("sweep", "convergence") else 0
        assert dst == f"runs/{spec.run_name}/seed{seed}/best.pt", spec.relpath
        dsts[dst] = spec
    quickstart = {p: _dst_and_src(p) for p in (ROOT / "configs" / "quickstart").glob("*.yaml")}
    assert all(dst == f"runs/quickstart/{p.stem}/best.pt" for p, (dst, _) in quickstart.items())
    dsts.update({dst: p for p, (dst, _) in quickstart.items()})
    sources = [src for p in CONFIGS if (src := _dst_and_src(p)[1]) is not None]
    assert sources and all(src in dsts for src in sources), sorted(set(sources) - set(dsts))[:5]


def test_cifar10_students_load_torchdistills_released_instructors():
    """Every CIFAR-10 student with an instructor loads torchdistill's released weights (no src_ckpt)."""
    teachers = [load_config_document(OFFICIAL / s.relpath)["models"].get("teacher_model")
                for s in experiments.cifar10_specs() if s.experiment != "instructors"]
    teachers = [t for t in teachers if t is not None]
    assert teachers and all(t["kwargs"]["pretrained"] is True and "src_ckpt" not in t for t in teachers)
    assert {t["key"] for t in teachers} == {"resnet56", "wide_resnet40_4"}


