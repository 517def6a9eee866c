#!/bin/bash
# Natural photographs for training the image backbone (xmodal train --data photos:DIR), from the
# wallpaper packages Debian ships: mate-backgrounds (nature/ holds 13 photographs) and ukui-wallpapers.
# Downloads the .deb files and unpacks them without installing anything (needs apt sources, no root
# for the unpacking; apt-get download runs as the calling user).
#   bash scripts/fetch_photos.sh [DIR]   (default: data/photos, git-ignored)
set -euo pipefail
out=${1:-data/photos}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download mate-backgrounds ukui-wallpapers)
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/unpacked"; done
mkdir -p "$out"
# Photographs only: the MATE nature set; the rest of both packages is mostly illustration.
cp "$work"/unpacked/usr/share/backgrounds/mate/nature/*.jpg "$out"/
echo "$(ls "$out" | wc -l) photographs in $out"
