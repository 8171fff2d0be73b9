#!/usr/bin/env bash
# Packs the build dependencies that a GPU machine without Debian's registry lacks into one
# archive, .device/bundle.tar.xz (ignored by git, at most 40 MiB), for tools/device/check.sh to
# unpack and build against there. The files come from the Debian packages themselves (.deb files
# from apt's cache, or downloaded), not from this system's folders, so the bundle holds exactly
# what the packages ship: headers, shared libraries and CMake package files of fmt, Catch2 (v2),
# OpenBLAS (the pthread build, with the gfortran runtime it links), CLI11, nlohmann-json, toml++,
# stb and zlib, in the packages' own layout under root/usr.
#
#   tools/device/prepare.sh            # writes .device/bundle.tar.xz and .device/bundle.txt
#
# The versions are those installed here (what CI builds against); a package not installed here
# takes apt's candidate version. Needs dpkg-deb and apt-get (Debian or Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out=$root/.device
max_bytes=$((40 * 1024 * 1024))

packages=(libfmt-dev libfmt9 catch2
          libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libgfortran5 libquadmath0
          libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libtomlplusplus3
          libstb-dev libstb0 zlib1g-dev zlib1g)

work=$(mktemp -d /tmp/dualflow-bundle.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/root" "$out"
chmod 0755 "$work" && chmod 0777 "$work/debs"  # apt-get download hands the file to its _apt user

version_of() {  # installed version, else apt's candidate
  local v
  v=$(dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | awk '/install ok installed/ {print $4; exit}')
  if [[ -z $v ]]; then
    v=$(apt-cache policy "$1" | awk '/Candidate:/ {print $2; exit}')
  fi
  [[ -n $v && $v != "(none)" ]] || { echo "prepare: no version of $1 is installed or available from apt" >&2; exit 1; }
  echo "$v"
}

for p in "${packages[@]}"; do
  v=$(version_of "$p")
  file_version=${v//:/%3a}  # apt writes an epoch's colon as %3a in file names
  cached=$(ls /var/cache/apt/archives/"${p}_${file_version}"_{amd64,all}.deb 2>/dev/null | head -1 || true)
  if [[ -n $cached ]]; then
    cp "$cached" "$work/debs/"
  else
    (cd "$work/debs" && apt-get download -qq "$p=$v") ||
      { echo "prepare: could not download $p=$v (apt-get download); is the Debian registry reachable?" >&2; exit 1; }
  fi
done

manifest=$work/root/BUNDLE.txt
{
  echo "# dualflow device bundle, made by tools/device/prepare.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# from $(. /etc/os-release && echo "$PRETTY_NAME"); package version sha256-of-.deb"
} >"$manifest"
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$work/root"
  echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) $(sha256sum "$deb" | cut -d' ' -f1)" >>"$manifest"
done

usr=$work/root/usr
arch_lib=$usr/lib/x86_64-linux-gnu
# What the build never reads: documentation, OpenBLAS's static archives, LAPACK and the
# reference-BLAS names (dualflow calls cblas_* from libopenblas only). Other archives stay:
# package files name them (Catch2's config imports libCatch2WithMain.a).
rm -rf "$usr/share/doc" "$usr/share/man" "$usr/share/lintian"
rm -f "$arch_lib"/openblas-pthread/*.a "$arch_lib"/openblas-pthread/liblapack* "$arch_lib"/openblas-pthread/libblas*
# Debian points the generic OpenBLAS names at the pthread build through update-alternatives,
# which unpacking does not run: make the same links, relative, inside the bundle.
ln -sfn openblas-pthread/libopenblas.so "$arch_lib/libopenblas.so"
ln -sfn openblas-pthread/libopenblas.so.0 "$arch_lib/libopenblas.so.0"
ln -sfn openblas-pthread/cblas.h "$usr/include/x86_64-linux-gnu/cblas.h"
ln -sfn openblas-pthread/openblas_config.h "$usr/include/x86_64-linux-gnu/openblas_config.h"
# Packages may link by absolute path (zlib1g-dev's libz.so -> /lib/...): point such links at the
# bundle's own file, relative, since the GPU machine's system folders hold other versions or none.
while IFS= read -r link; do
  target=$(readlink "$link")
  [[ -e $work/root$target ]] || { echo "prepare: $link points to $target, which no bundled package ships" >&2; exit 1; }
  ln -sfnr "$work/root$target" "$link"
done < <(find "$work/root" -type l -lname '/*')
# A link left dangling would fail only on the GPU machine: check here, with every link resolved
# inside the bundle (no absolute link is left, so the host's folders play no part).
dangling=$(find "$work/root" -xtype l)
[[ -z $dangling ]] || { echo "prepare: dangling links in the bundle:" >&2; echo "$dangling" >&2; exit 1; }
for header in fmt/core.h catch2/catch.hpp CLI/CLI.hpp nlohmann/json.hpp toml++/toml.h stb/stb_image_write.h zlib.h \
              x86_64-linux-gnu/cblas.h; do
  [[ -e $usr/include/$header ]] || { echo "prepare: the bundle lacks include/$header" >&2; exit 1; }
done

tar -C "$work" -cJf "$out/bundle.tar.xz.tmp" root
bytes=$(stat -c %s "$out/bundle.tar.xz.tmp")
if ((bytes > max_bytes)); then
  rm -f "$out/bundle.tar.xz.tmp"
  echo "prepare: the bundle is $bytes bytes, over the $max_bytes-byte limit" >&2
  exit 1
fi
mv "$out/bundle.tar.xz.tmp" "$out/bundle.tar.xz"
cp "$manifest" "$out/bundle.txt"
unpacked=$(du -sb "$work/root" | cut -f1)
echo "prepare: $out/bundle.tar.xz, $((bytes / 1024)) KiB ($((unpacked / 1024)) KiB unpacked), ${#packages[@]} packages:"
tail -n +3 "$manifest" | awk '{print "  " $1 " " $2}'
