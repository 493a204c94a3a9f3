"""The core is every backend's: the contract, the tensor and its functions name no HE notion,
and the compiler asks backends only through what they declare (no getattr/hasattr probing)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import pets
from pets.backends.levelled import LevelledRequirements

PETS = Path(pets.__file__).parent
#: modules every backend shares
NEUTRAL = ["backends/base.py", "tensor.py", "functions.py"]
#: CKKS (levelled-SIMD) notions that belong to the HE side
HE_NOTIONS = re.compile(
    r"rotation|galois|slots?\b|first_product|noise[ _]gain|matmul[ _]shapes",
    re.IGNORECASE,
)


@pytest.mark.parametrize("module", NEUTRAL)
def test_shared_modules_name_no_he_notion(module: str) -> None:
    text = (PETS / module).read_text()
    found = sorted({m.group(0).lower() for m in HE_NOTIONS.finditer(text)})
    assert found == [], f"{module} names {found}"


def _probes(path: Path) -> list[str]:
    """``getattr``/``hasattr`` calls whose object is a backend (``backend`` in its source)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr") and node.args
                and "backend" in ast.unparse(node.args[0])):
            found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    return found


def test_the_compiler_never_probes_a_backend() -> None:
    probes = [probe for path in sorted((PETS / "compiler").glob("*.py"))
              for probe in _probes(path)]
    assert probes == []


def test_each_backend_names_its_lowering() -> None:
    lowerings = {name: pets.registry.backend_class(name).lowering for name in
                 ("plain", "ckks", "mpc")}
    assert lowerings == {"plain": "exact", "ckks": "levelled", "mpc": "exact"}


def test_requirements_carry_an_extension_the_base_class_does_not_read() -> None:
    extension = LevelledRequirements(depth=2, matmul_shapes=((4, 2),), first_product=(4, 2),
                                     precision=0.01, check_range="off")
    requirements = pets.Requirements(max_abs=3.0, max_rows=4, extension=extension)
    data = requirements.to_dict()
    assert data["extension"]["kind"] == "levelled"
    assert "check_range" not in data["extension"]  # one party's own option stays home
    assert pets.Requirements.from_dict(data) == requirements


def test_an_unknown_extension_is_refused_with_what_to_do() -> None:
    with pytest.raises(pets.SerializationError, match=re.escape(
        "requirements name an unknown extension 'bfv-tables'; create the backend the model "
        "was compiled for"
    )):
        pets.Requirements.from_dict({"extension": {"kind": "bfv-tables"}})


def test_an_unknown_lowering_is_refused_naming_the_known_ones() -> None:
    from pets.compiler.lowerings import lowering_named

    with pytest.raises(pets.CompileError, match=re.escape(
        "no lowering is named 'tfhe' (a backend's 'lowering' attribute); known: exact, levelled"
    )):
        lowering_named("tfhe")
