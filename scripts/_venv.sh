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
# The compiled core (asyncmp._channel_c, compiled from src/asyncmp/_channel_py.py, and its
# primitives asyncmp._speedups) is built in place; rebuild it when a source is newer than a
# built module (or one is missing). Without a C compiler it stays unbuilt and asyncmp runs on
# its pure-Python core.
stale=""
for module in _speedups _channel_c; do
    built=$(ls src/asyncmp/$module.*.so 2>/dev/null | head -n 1 || true)
    for source in src/asyncmp/_speedups.pyx src/asyncmp/_speedups.pxd \
        src/asyncmp/_channel_py.py src/asyncmp/_channel_c.pxd; do
        if [ -z "$built" ] || [ "$source" -nt "$built" ]; then stale=1; fi
    done
done
if [ -n "$stale" ]; then
    .venv/bin/python setup.py -q build_ext --inplace >/dev/null 2>&1 \
        || echo "scripts: the compiled core did not build; asyncmp runs on pure Python" >&2
fi
export PATH="$root/.venv/bin:$PATH"
