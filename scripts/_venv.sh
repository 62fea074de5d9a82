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
# Reinstall only when pyproject.toml changed since the last install.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,trio,uvloop,nats,msgpack,bench]"
    touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
