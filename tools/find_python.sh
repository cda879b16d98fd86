#!/usr/bin/env bash
# Prints the path of a working python<VERSION> (e.g. `tools/find_python.sh 3.12`), or exits 1.
# A name on PATH is run, not just looked up: pyenv's shims exist for every installed version
# but fail unless that version is selected, so they are skipped in favour of pyenv's own copy.
set -uo pipefail
v=${1:?usage: find_python.sh VERSION (e.g. 3.12)}
ok() { "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))" \
           >/dev/null 2>&1; }
if command -v "python$v" >/dev/null 2>&1 && ok "python$v"; then
    command -v "python$v"; exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
    for p in "$(pyenv root)"/versions/"$v"*/bin/"python$v"; do
        if [ -x "$p" ] && ok "$p"; then echo "$p"; exit 0; fi
    done
fi
exit 1
