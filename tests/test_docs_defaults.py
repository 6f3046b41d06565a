"""Every default docs/recipes.md states is the composed config's: the field tables and the msgzoo column of
"Defaults vs the authors' code" are read from the page and checked against the recipes' configs."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "recipes.md").read_text()
CONFIGS = {"one_step": "sgoc_recommendation_letter", "reaching_goals": "sgoc_reaching_goals"}
MISSING = object()


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end > 0 else None]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def documented_defaults() -> list[tuple[str, str, str]]:
    """``(config, field, documented value)`` for every row of the "Config fields" tables."""
    rows, context, columns = [], None, None
    for line in _section(PAGE, "Config fields").splitlines():
        if line.startswith("### "):
            context = {"(Reaching Goals)": "reaching_goals", "(one-step)": "one_step"}.get(line.split("` ")[-1].strip())
        elif line.strip() in ("One-step:", "Reaching Goals:"):
            context = "one_step" if line.strip() == "One-step:" else "reaching_goals"
        elif line.startswith("| field |"):
            header = _cells(line)[1:-1]
            if header == ["one-step", "Reaching Goals"]:
                columns = ["one_step", "reaching_goals"]
            else:
                assert header == ["default"], line
                columns = [context] if context else ["one_step", "reaching_goals"]
            shared = header == ["default"]  # one column for every config in ``columns``
        elif line.startswith("| `"):
            cells = _cells(line)
            fields = re.findall(r"`([\w.]+)`", cells[0])
            for i, config in enumerate(columns):
                value = cells[1 if shared else 1 + i]
                values = value.split(", ") if len(fields) > 1 else [value]
                assert len(values) == len(fields), line
                rows += [(config, f, v) for f, v in zip(fields, values)]
    return rows


def _parse(value: str):
    value = re.sub(r"\s*\(.*\)$", "", value).replace("`", "").strip()  # drop "(from `map`)"-style remarks
    if value == "-":
        return MISSING
    if re.fullmatch(r"\d{1,3}(,\d{3})+", value):
        return int(value.replace(",", ""))
    return yaml.safe_load(value)


def _get(cfg, field: str):
    node = cfg
    for part in field.split("."):
        if part not in node:
            return MISSING
        node = node[part]
    return node


def _same(documented, actual) -> bool:
    if isinstance(documented, (int, float)) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        return math.isclose(documented, actual, rel_tol=1e-12)
    return documented == actual


@pytest.fixture(scope="module")
def configs():
    from hydra import compose, initialize_config_dir

    out = {}
    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base="1.3"):
        for key, name in CONFIGS.items():
            out[key] = OmegaConf.to_container(compose(config_name=name), resolve=False)
    return out


def test_the_tables_cover_every_config_field(configs):
    documented = {(c, f) for c, f, _ in documented_defaults()}
    for key, cfg in configs.items():
        leaves = _leaf_fields(cfg)
        assert {f for c, f in documented if c == key} >= leaves, f"{key}: undocumented {leaves - {f for c, f in documented if c == key}}"


def _leaf_fields(cfg: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in cfg.items():
        if k == "hydra":
            continue
        if isinstance(v, dict):
            out |= _leaf_fields(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


@pytest.mark.parametrize("config, field, value", documented_defaults(), ids=lambda x: str(x)[:40])
def test_documented_default_is_the_composed_one(configs, config, field, value):
    if value == "per recipe":
        return
    documented, actual = _parse(value), _get(configs[config], field)
    assert _same(documented, actual), f"docs/recipes.md says {field} = {value!r} ({config}); the config has {actual!r}"


def _e(x: float) -> str:
    """``3.0e-3`` as the page writes it."""
    return f"{x:.1e}".replace("e-0", "e-")


def _authors_rows(game: str) -> dict[str, str]:
    """The msgzoo column of the "Defaults vs the authors' code" table of ``game``, by setting."""
    section = _section(PAGE, "Defaults vs the authors' code")
    table = section.split(f"### {game}\n", 1)[1].split("\n### ", 1)[0]
    return {_cells(l)[0]: _cells(l)[1] for l in table.splitlines() if l.startswith("| ") and not l.startswith("| setting")}


def test_defaults_vs_the_authors_code_quote_the_configs(configs):
    rg, rl = configs["reaching_goals"], configs["one_step"]
    rows = _authors_rows("Reaching Goals")
    n, t = rg["env"]["num_envs"], rg["env"]["steps_per_batch"]
    assert f"{n} games x {t} steps = {n * t} steps" in rows["data per update"]
    o, L = rg["optim"], rg["loss"]
    assert rows["learning rates"].startswith(
        f"signaling {_e(o['signaling_lr'])}; W^i, W^j and receiver critic {_e(o['sender_critic_lr'])}; "
        f"receiver actor {_e(o['receiver_actor_lr'])}"
    )
    assert o["sender_critic_lr"] == o["receiver_critic_lr"]
    assert rows["λ, ε, weight c"] == f"{L['lagrange_multiplier']:g}, {L['epsilon']:g}, {L['receiver_coeff']:g}"
    assert rows["discounts"] == f"sender {L['sender_gamma']:g}, receiver {L['receiver_gamma']:g}"
    assert f"τ = {L['target_tau']:g}" in rows["target critics"]
    assert rows["scheme entropy bonus"].startswith(f"{L['sender_entropy_coeff']:g} ")

    rows = _authors_rows("Recommendation Letter")
    o, L = rl["optim"], rl["loss"]
    assert rows["students per batch"].startswith(f"{rl['env']['num_envs']} ")
    assert rows["budget"].startswith(f"{rl['collector']['total_frames']:,} students")
    for setting, key in [("signaling lr", "signaling_lr"), ("sender critics lr", "sender_critic_lr"),
                         ("receiver actor lr", "receiver_actor_lr"), ("receiver critic lr", "receiver_critic_lr")]:
        assert rows[setting] == _e(o[key]), setting
    assert rows["λ, ε, weight c of the log π term"] == f"{L['lagrange_multiplier']:g}, {L['epsilon']:g}, {L['receiver_coeff']:g}"


def test_no_document_cites_a_path_outside_the_repository():
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "recipes").rglob("*.yaml"),
             *(ROOT / "recipes").glob("*.py"), *(ROOT / "scripts").glob("*.py"), *(ROOT / "msgzoo").rglob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in files if "/work/" in p.read_text()]
    assert not offenders
