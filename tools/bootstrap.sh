#!/usr/bin/env bash
# Installs the Debian packages BoneStream builds against, if any is missing.
# Role: set-up for a fresh Debian machine that already has Swift 6.x.
set -euo pipefail
packages=(libpng-dev libopenblas-dev libzmq3-dev zlib1g-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all of ${packages[*]} are installed"
  exit 0
fi
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
echo "bootstrap: installing ${missing[*]}"
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y "${missing[@]}"
