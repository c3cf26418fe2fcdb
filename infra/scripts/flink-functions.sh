#!/usr/bin/env bash
# Builds impetus's own Flink functions (infra/jvm/flink-functions: keys, timestamps, bundles) into
# one jar beside the fetched Flink jars, so that every job ships it with pipeline.jars. Compiled
# against the Flink of the Python environment (PyFlink's flink-dist), so the two never disagree.
#   infra/scripts/flink-functions.sh OUT.jar
set -euo pipefail
out=$1
src=infra/jvm/flink-functions/src
if ! command -v javac >/dev/null 2>&1; then
  echo "error: javac not found: impetus compiles a few Flink functions of its own and needs a JDK 17" \
       "(apt-get install openjdk-17-jdk-headless, or run make system as root)" >&2
  exit 1
fi
lib=$(.venv/bin/python -c 'import os, pyflink; print(os.path.join(os.path.dirname(pyflink.__file__), "lib"))')
dist=$(ls "$lib"/flink-dist-*.jar 2>/dev/null | head -1)
[ -n "$dist" ] || { echo "error: no flink-dist jar in $lib: is apache-flink installed in .venv? (make env)" >&2; exit 1; }
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
echo "compiling impetus's Flink functions into $out"
javac -nowarn --release 11 -encoding UTF-8 -cp "$dist" -d "$build" $(find "$src" -name '*.java')
mkdir -p "$(dirname "$out")"
jar cf "$out.tmp" -C "$build" .
mv "$out.tmp" "$out"
