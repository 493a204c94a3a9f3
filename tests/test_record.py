"""pets.record: a hash-chained run record in which any edited, removed or moved line is found."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import pets
from pets.record import fingerprint

ROOT = Path(__file__).resolve().parents[1]
KEY = b"k" * 32


def write_runs(path: Path, count: int = 4, key: bytes | None = None) -> list[str]:
    """``count`` runs of every kind; returns the entries' hashes."""
    hashes = []
    with pets.record(path, key=key) as rec:
        for run in range(count):
            entry = rec.log(
                ["training", "inference", "release", "audit"][run % 4],
                what=f"run {run}",
                parameters={"epochs": run, "lr": 0.1, "layers": [64, 32, 10]},
                epsilon=0.5, delta=1e-5,
                keys={"client": "CKKS secret key", "server": "public and Galois keys"},
                inputs={"x": np.arange(run + 1)}, outputs={"y": np.ones(2) * run},
            )
            hashes.append(entry.hash)
    return hashes


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_a_written_record_verifies(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    hashes = write_runs(path)
    report = pets.verify_record(path)
    assert report.entries == 4 and report.head == hashes[-1]
    assert report.kinds == {"training": 1, "inference": 1, "release": 1, "audit": 1}
    assert report.epsilon_spent == pytest.approx(2.0)
    assert "chain intact, 4 entries" in str(report)


def test_each_line_holds_what_ran_and_hashes_not_data(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    write_runs(path, count=2)
    first, second = (json.loads(line) for line in lines_of(path))
    assert first["index"] == 0 and first["prev"] == "0" * 64
    assert second["index"] == 1 and second["kind"] == "inference"
    assert second["privacy"] == {"epsilon": 0.5, "delta": 1e-5}
    assert second["keys"]["client"] == "CKKS secret key"
    assert second["parameters"]["layers"] == [64, 32, 10]
    assert second["inputs"] == {"x": fingerprint(np.arange(2))}
    assert second["outputs"]["y"].startswith("sha256:")


def test_an_edited_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    write_runs(path)
    lines = lines_of(path)
    lines[1] = lines[1].replace('"epsilon":0.5', '"epsilon":0.05')
    path.write_text("".join(lines))
    with pytest.raises(pets.SerializationError,
                       match=r"line 2: its hash does not match line 3's 'prev': it was edited"):
        pets.verify_record(path)


def test_a_removed_line_is_found(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    write_runs(path)
    lines = lines_of(path)
    path.write_text("".join(lines[:1] + lines[2:]))
    with pytest.raises(pets.SerializationError,
                       match=r"line 2: its index is 2, expected 1: a line before it was removed"):
        pets.verify_record(path)


def test_swapped_lines_are_found(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    write_runs(path)
    lines = lines_of(path)
    path.write_text("".join([lines[0], lines[2], lines[1], lines[3]]))
    with pytest.raises(pets.SerializationError, match=r"line 2: its index is 2, expected 1"):
        pets.verify_record(path)


def test_a_cut_off_last_line_is_found(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    write_runs(path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(pets.SerializationError, match=r"line 4: the last line is incomplete"):
        pets.verify_record(path)
    with pytest.raises(pets.SerializationError, match=r"the last line is incomplete"):
        pets.record(path).log("inference")


def test_removed_last_lines_need_the_head_kept_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    hashes = write_runs(path)
    path.write_text("".join(lines_of(path)[:3]))
    assert pets.verify_record(path).entries == 3  # a shorter chain is still a chain...
    with pytest.raises(pets.SerializationError, match=r"line 3: the record ends at head"):
        pets.verify_record(path, head=hashes[-1])  # ...but not the one whose head was kept


def test_a_rebuilt_chain_passes_without_the_key_and_fails_with_it(tmp_path: Path) -> None:
    """Whoever can write the file can forge a consistent chain; only the HMAC key stops that."""
    path = tmp_path / "runs.jsonl"
    write_runs(path, count=2, key=KEY)
    assert pets.verify_record(path, key=KEY).authenticated
    forged = tmp_path / "forged.jsonl"
    prev = "0" * 64
    for line in lines_of(path):
        content = json.loads(line)
        content["privacy"]["epsilon"] = 0.01
        content["prev"] = prev
        data = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        with forged.open("ab") as f:
            f.write(data + b"\n")
        import hashlib

        prev = hashlib.sha256(data).hexdigest()
    assert pets.verify_record(forged).entries == 2
    with pytest.raises(pets.SerializationError, match=r"line 1: its HMAC does not verify"):
        pets.verify_record(forged, key=KEY)
    with pytest.raises(pets.SerializationError, match=r"line 1: its HMAC does not verify"):
        pets.verify_record(path, key=b"x" * 32)


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    code = textwrap.dedent(f"""
        import sys, pets
        rec = pets.record({str(path)!r})
        for i in range(25):
            rec.log("inference", what=f"writer {{sys.argv[1]}} run {{i}}",
                    parameters={{"pad": "x" * 500}})
    """)
    writers = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(4)]
    assert all(w.wait(timeout=120) == 0 for w in writers)
    report = pets.verify_record(path)
    assert report.entries == 100


def test_a_budget_is_recorded_with_its_spend(tmp_path: Path) -> None:
    budget = pets.dp.Budget(epsilon=1.0, delta=1e-5)
    budget.spend(0.25, 1e-6)
    entry = pets.record(tmp_path / "runs.jsonl").log("release", budget=budget, epsilon=0.25)
    assert entry.content["privacy"]["budget"]["spent"] == [0.25, 1e-6]
    assert entry.content["privacy"]["budget"]["epsilon"] == 1.0


# --- fingerprints ----------------------------------------------------------------


def test_a_torch_tensor_and_its_numpy_array_share_a_fingerprint() -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert fingerprint(torch.tensor(values)) == fingerprint(values)
    assert fingerprint(values) != fingerprint(values.astype(np.float64))
    assert fingerprint(values) != fingerprint(values.reshape(3, 2))


def test_a_module_fingerprint_follows_its_weights() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    before = fingerprint(model)
    with torch.no_grad():
        model.bias.add_(1.0)
    assert fingerprint(model) != before


def test_a_path_fingerprints_the_file(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc")
    assert fingerprint(path) == fingerprint(b"abc")


def test_a_private_tensor_fingerprints_its_bytes() -> None:
    be = pets.backend("plain")
    tensor = be.encrypt(np.ones((2, 2)))
    assert fingerprint(tensor) == fingerprint(tensor.to_bytes())


# --- bad input -------------------------------------------------------------------


def test_what_cannot_be_fingerprinted_is_refused() -> None:
    with pytest.raises(pets.SerializationError, match=r"^cannot fingerprint a object"):
        fingerprint(object())


def test_parameters_that_are_not_json_are_refused(tmp_path: Path) -> None:
    with pytest.raises(pets.SerializationError,
                       match=r"^parameters.model is a Linear, which a record cannot hold"):
        pets.record(tmp_path / "r.jsonl").log("training",
                                              parameters={"model": torch.nn.Linear(1, 1)})
    assert not (tmp_path / "r.jsonl").exists()


def test_a_field_the_record_writes_itself_is_refused(tmp_path: Path) -> None:
    with pytest.raises(pets.SerializationError, match=r"^'prev' is a field the record writes"):
        pets.record(tmp_path / "r.jsonl").log("training", prev="0")


def test_a_negative_epsilon_is_refused(tmp_path: Path) -> None:
    with pytest.raises(pets.SerializationError, match=r"^epsilon must be >= 0, got -1.0"):
        pets.record(tmp_path / "r.jsonl").log("release", epsilon=-1.0)


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(pets.SerializationError, match=r"^key must be bytes of at least 16"):
        pets.record(tmp_path / "r.jsonl", key=b"short")


def test_a_missing_record_is_named(tmp_path: Path) -> None:
    with pytest.raises(pets.SerializationError, match=r"^cannot read the record .*nope.jsonl"):
        pets.verify_record(tmp_path / "nope.jsonl")


# --- the command line and the examples -------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pets", "verify-record", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_cli_verifies_a_record_and_names_a_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    hashes = write_runs(path, key=KEY)
    (tmp_path / "key").write_bytes(KEY)
    ok = run_cli(str(path), "--head", hashes[-1], "--key-file", str(tmp_path / "key"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["entries"] == 4
    lines = lines_of(path)
    path.write_text("".join(lines[:2] + lines[3:]))
    broken = run_cli(str(path))
    assert broken.returncode == 2
    assert broken.stderr.startswith("pets: SerializationError: ")
    assert "line 3: its index is 3, expected 2" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_docstring_examples_hold() -> None:
    module = importlib.import_module("pets.record")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0



# --- what an unkeyed chain can and cannot show; keyed by configuration -----------------------


def test_a_deeply_nested_line_is_refused_with_the_line_number(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    write_runs(path, count=1)
    with path.open("a") as f:
        f.write("[" * 200_000 + "]" * 200_000 + "\n")
    with pytest.raises(pets.SerializationError, match=r"line 2: not valid JSON \(or nested"):
        pets.verify_record(path)
    with pytest.raises(pets.SerializationError, match="the last line is not a record entry"):
        pets.record(path).log("inference")


def test_every_report_gives_the_head_and_line_count_to_keep_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    hashes = write_runs(path, count=3)
    text = str(pets.verify_record(path))
    assert f"head {hashes[-1]} after 3 lines" in text
    assert "keep this head and line count outside the record" in text
    assert "an edited last line or removed last lines cannot be detected" in text
    assert pets.verify_record(path).to_dict()["lines"] == 3
    kept = str(pets.verify_record(path, head=hashes[-1]))
    assert "the head matches the one kept elsewhere" in kept


def test_an_edited_last_line_passes_an_unkeyed_chain_but_not_its_kept_head(
    tmp_path: Path,
) -> None:
    """The limit the docs state: the last line has no successor to break."""
    path = tmp_path / "runs.jsonl"
    hashes = write_runs(path, count=2)
    lines = lines_of(path)
    path.write_text(lines[0] + lines[1].replace('"epsilon":0.5', '"epsilon":0.05'))
    assert pets.verify_record(path).entries == 2  # undetectable without head or key
    with pytest.raises(pets.SerializationError, match=r"line 2: the record ends at head"):
        pets.verify_record(path, head=hashes[-1])


def test_a_configured_key_file_makes_the_record_keyed_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "record.key"
    key_file.write_bytes(KEY + b"\n")
    monkeypatch.setenv("PETS_RECORD_KEY_FILE", str(key_file))
    path = tmp_path / "runs.jsonl"
    write_runs(path, count=2)  # no key= given
    assert all('"mac":' in line for line in lines_of(path))
    assert pets.verify_record(path).authenticated
    lines = lines_of(path)
    path.write_text(lines[0] + lines[1].replace('"epsilon":0.5', '"epsilon":0.05'))
    with pytest.raises(pets.SerializationError, match="line 2: its HMAC does not verify"):
        pets.verify_record(path)  # the edited last line is caught by the configured key


def test_a_missing_configured_key_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PETS_RECORD_KEY_FILE", str(tmp_path / "absent.key"))
    with pytest.raises(pets.SerializationError,
                       match=r"cannot read the record key file .*PETS_RECORD_KEY_FILE"):
        pets.record(tmp_path / "runs.jsonl")
