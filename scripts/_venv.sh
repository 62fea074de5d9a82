# Sourced by scripts/test and scripts/demo: create or reuse .venv and install the project
# with the extras they need. Only python3 is required on the machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
fi
stamp=".venv/.asyncmp-installed"
# Reinstall only when pyproject.toml or setup.py changed since the last install.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,trio,uvloop,nats,msgpack,bench]"
    touch "$stamp"
fi
# The compiled core (asyncmp._speedups) is built in place; rebuild it when its source is
# newer than the built module (or it is missing). Without a C compiler it stays unbuilt and
# asyncmp runs on its pure-Python core.
built=$(ls src/asyncmp/_speedups.*.so 2>/dev/null | head -n 1 || true)
if [ -z "$built" ] || [ src/asyncmp/_speedups.pyx -nt "$built" ]; then
    .venv/bin/python setup.py -q build_ext --inplace >/dev/null 2>&1 \
        || echo "scripts: the compiled core did not build; asyncmp runs on pure Python" >&2
fi
export PATH="$root/.venv/bin:$PATH"
