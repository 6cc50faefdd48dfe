#!/bin/sh
# Create the local ClickHouse's virtual environment, target/local-clickhouse/venv,
# from requirements.txt; a no-op while the venv matches requirements.txt (a copy of
# it is kept in the venv as the stamp). Safe to run concurrently.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=$root/target/local-clickhouse/venv
stamp=$venv/requirements.txt
mkdir -p "$root/target/local-clickhouse"
exec 9>"$root/target/local-clickhouse/venv.lock"
flock 9
if [ -x "$venv/bin/python" ] && cmp -s "$stamp" "$here/requirements.txt"; then
    exit 0
fi
echo "local-clickhouse: creating $venv (pip install -r deploy/local/requirements.txt)" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
