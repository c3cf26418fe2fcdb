#!/usr/bin/env bash
# System tools impetus needs: Java 17+ (Kafka, Flink, Spark) with its compiler (impetus's own Flink
# functions, infra/jvm/flink-functions), Maven (fetches the jars),
# kcat (an independent Kafka client for tests and operators), opencv-doc (the vtest.avi clip and
# sample images the video replayer, demo and tests use). Installs what is missing
# with apt-get when run as root; otherwise says what to install. Silent when all is there.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
[ -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] || need+=(opencv-doc)

if command -v java >/dev/null 2>&1; then
  major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  if [ "${major%%.*}" -lt 17 ] 2>/dev/null; then
    echo "error: Java ${major} found, impetus needs Java 17 or newer (apt-get install openjdk-17-jre-headless)" >&2
    exit 1
  fi
fi

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing system packages: ${need[*]}" >&2
  echo "       install them with your package manager, e.g. sudo apt-get install ${need[*]}" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || { echo "error: apt-get install ${need[*]} failed; see the messages above" >&2; exit 1; }
