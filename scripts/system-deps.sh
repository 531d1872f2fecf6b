#!/usr/bin/env bash
# Install the Debian/Ubuntu packages Frameherd needs, only those that are missing.
#   scripts/system-deps.sh run    what the control station needs (Python venv, Qt's xcb libraries, FFmpeg)
#   scripts/system-deps.sh test   also what the test suite needs (Debian's Blender, Xvfb)
# Uses sudo when not root; without apt (another distribution) it only says what to install.
set -euo pipefail
set_name=${1:-run}
pkgs=(python3-venv python3-dev ffmpeg libxcb-cursor0 libxkbcommon-x11-0 libegl1 libgl1 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0)
if [ "$set_name" = test ]; then
  pkgs+=(blender xvfb)
fi
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "Please install with your package manager: ${missing[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "Missing system packages: ${missing[*]}. Run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "Installing system packages: ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
