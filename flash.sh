#!/usr/bin/env bash
# flash.sh: write Raspberry Pi OS Lite to an SD card and make it a Custodian camera node or
# central, ready at first boot. IT's steps and every file it writes: docs/provisioning.md.
#
#   ./flash.sh --image raspios-lite.img.xz --device /dev/sdX --role camera|central --name NAME
#              --central HOST[:PORT] [--invite CODE] [--wifi-ssid SSID --wifi-psk-file FILE]
#              [--ssh-key FILE] [--sha256 HEX] [--yes] [--force] ...      (--help for all)
#
# Safety, as Raspberry Pi Imager does it: the system disk, a mounted device and a target
# smaller than the image are refused; a non-removable device needs --force; the operator
# types the device's name unless --yes; --sha256 checks the image first. Every refusal
# happens before anything is written. After writing: sync, read back and compare, then
# the boot partition is customised without mounting it (mtools at the offset sfdisk
# reads from the partition table), and every file written there is read back too.
#
# Tools it needs (checked at start):
#   sfdisk lsblk findmnt blockdev losetup (util-linux, fdisk)  mcopy mtype mdir mmd (mtools)
#   xz (xz-utils)  dd cmp sha256sum stat head od (coreutils, diffutils)  awk sed grep
# (and the rest of coreutils: cp, mktemp, readlink, ...); bmaptool (bmap-tools) when it is
# installed and IMAGE.bmap lies beside the image.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true   # bash 5.2: '&' in ${x//a/b} stays literal

REQUIRED_TOOLS=(sfdisk lsblk findmnt blockdev losetup mcopy mtype mdir mmd xz dd cmp sha256sum stat head od awk sed grep)
APT_LINE="sudo apt-get install -y fdisk util-linux mtools xz-utils coreutils diffutils"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGES=$HERE/images
DEFAULT_PORT=8650
export MTOOLS_SKIP_CHECK=1 MTOOLS_NO_VFAT=0

say() { printf 'flash.sh: %s\n' "$*" >&2; }
refuse() { say "refused: $*"; say "nothing was written."; exit 1; }
usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  cat >&2 <<'EOF'

Options:
  --image FILE          Raspberry Pi OS Lite (arm64) image, .img or .img.xz
  --device PATH         the card (/dev/sdX, /dev/mmcblkN) or a disk-image file to prepare
  --role camera|central what the card becomes
  --name NAME           camera name (as invited) or the central's host name: a-z, 0-9, '-'
  --central HOST[:PORT] where the central listens (camera: required; central: its port)
  --invite CODE         camera: the pairing code from 'custodian camera invite NAME ...'
  --ssh-key FILE        public key(s) for the itadmin account (central: required)
  --wifi-ssid SSID      Wi-Fi network (wired Ethernet otherwise)
  --wifi-psk-file FILE  file holding its passphrase (never given on the command line)
  --wifi-country CC     Wi-Fi regulatory country (default US)
  --timezone TZ         default: this machine's, else UTC
  --ntp "HOST ..."      NTP servers (default: the OS's)
  --camera-backend B    picamera2 (default), v4l2, synthetic, file
  --sha256 HEX|FILE     the image's published SHA-256 (checked before anything is written)
  --bundle DIR          the offline bundle (default: build/bundle, made by 'make bundle')
  --release R           trixie or bookworm (default: read from the image's boot partition)
  --yes                 do not ask to type the device name
  --force               allow a non-removable device (never the system disk or a mounted one)
EOF
  exit 2
}

# --------------------------------------------------------------------------- tools

missing=()
for tool in "${REQUIRED_TOOLS[@]}"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "missing tools: ${missing[*]}"
  say "install them with: $APT_LINE"
  exit 1
fi

# --------------------------------------------------------------------------- arguments

image="" device="" role="" name="" central="" invite="" ssh_key="" wifi_ssid="" wifi_psk_file=""
wifi_country=US timezone="" ntp="" backend=picamera2 sha256="" bundle="$HERE/build/bundle" release=""
yes=0 force=0
while [ $# -gt 0 ]; do
  case $1 in
    --image|--device|--role|--name|--central|--invite|--ssh-key|--wifi-ssid|--wifi-psk-file|--wifi-country|\
    --timezone|--ntp|--camera-backend|--sha256|--bundle|--release)
      [ $# -ge 2 ] || { say "$1 needs a value"; usage; }
      value=$2
      case $1 in
        --image) image=$value ;; --device) device=$value ;; --role) role=$value ;; --name) name=$value ;;
        --central) central=$value ;; --invite) invite=$value ;; --ssh-key) ssh_key=$value ;;
        --wifi-ssid) wifi_ssid=$value ;; --wifi-psk-file) wifi_psk_file=$value ;;
        --wifi-country) wifi_country=$value ;; --timezone) timezone=$value ;; --ntp) ntp=$value ;;
        --camera-backend) backend=$value ;; --sha256) sha256=$value ;; --bundle) bundle=$value ;;
        --release) release=$value ;;
      esac
      shift 2 ;;
    --yes) yes=1; shift ;;
    --force) force=1; shift ;;
    -h|--help) usage ;;
    *) say "unknown argument: $1"; usage ;;
  esac
done

[ -n "$image" ] || { say "--image is required"; usage; }
[ -n "$device" ] || { say "--device is required"; usage; }
case $role in camera|central) ;; *) say "--role must be camera or central"; usage ;; esac
[[ $name =~ ^[a-z0-9][a-z0-9-]{0,39}$ ]] || refuse "--name must be 1-40 lower-case letters, digits and dashes (it names the camera and the host): '$name'"
[ -f "$image" ] && [ -r "$image" ] || refuse "cannot read the image $image"

port=$DEFAULT_PORT host=""
if [ -n "$central" ]; then
  [[ $central =~ ^([A-Za-z0-9.-]+)(:([0-9]{1,5}))?$ ]] || refuse "--central must be HOST or HOST:PORT: '$central'"
  host=${BASH_REMATCH[1]}
  [ -n "${BASH_REMATCH[3]}" ] && port=$((10#${BASH_REMATCH[3]}))
  [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || refuse "--central: port $port is out of range"
fi
if [ "$role" = camera ]; then
  [ -n "$host" ] || refuse "a camera needs --central HOST[:PORT]: where its central listens"
  [ -n "$invite" ] || refuse "a camera needs --invite CODE: on the central, 'custodian camera invite $name --category ... --location ...'"
  code=$(printf '%s' "$invite" | tr 'a-z' 'A-Z' | tr -d ' -' | tr 'OIL' '011')
  [[ $code =~ ^[0-9A-HJKMNP-TV-Z]{12}$ ]] || refuse "--invite: a pairing code is 12 letters and digits, like 7K3Q-9XWP-2DMF"
  code=${code:0:4}-${code:4:4}-${code:8:4}
  case $backend in picamera2|v4l2|synthetic|file) ;; *) refuse "--camera-backend must be picamera2, v4l2, synthetic or file" ;; esac
fi

ssh_keys=()
if [ -n "$ssh_key" ]; then
  [ -r "$ssh_key" ] || refuse "cannot read --ssh-key $ssh_key"
  grep -q 'PRIVATE KEY' "$ssh_key" && refuse "--ssh-key $ssh_key is a PRIVATE key: give the .pub file"
  while IFS= read -r line || [ -n "$line" ]; do
    [ -z "$line" ] && continue
    [[ $line =~ ^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)\ [A-Za-z0-9+/=]+(\ [[:print:]]*)?$ ]] \
      || refuse "--ssh-key $ssh_key: not an OpenSSH public key line: ${line:0:40}..."
    ssh_keys+=("$line")
  done < "$ssh_key"
  [ ${#ssh_keys[@]} -gt 0 ] || refuse "--ssh-key $ssh_key holds no key"
elif [ "$role" = central ]; then
  refuse "a central needs --ssh-key FILE: IT's administrator sets it up over SSH (docs/provisioning.md)"
else
  say "note: no --ssh-key: nobody can log in to this camera over the network (it needs no one to)"
fi

wifi_psk=""
if [ -n "$wifi_ssid" ]; then
  [ -n "$wifi_psk_file" ] || refuse "--wifi-ssid needs --wifi-psk-file FILE (the passphrase never goes on a command line)"
  [ -r "$wifi_psk_file" ] || refuse "cannot read --wifi-psk-file $wifi_psk_file"
  wifi_psk=$(head -n1 "$wifi_psk_file" | tr -d '\r\n')
  [ ${#wifi_ssid} -ge 1 ] && [ ${#wifi_ssid} -le 32 ] || refuse "--wifi-ssid must be 1-32 characters"
  [[ $wifi_ssid =~ ^[[:print:]]+$ ]] || refuse "--wifi-ssid holds characters that are not printable"
  [[ $wifi_psk =~ ^[[:print:]]{8,63}$ || $wifi_psk =~ ^[0-9a-fA-F]{64}$ ]] \
    || refuse "the Wi-Fi passphrase must be 8-63 printable characters (or 64 hex digits)"
  [[ $wifi_country =~ ^[A-Z]{2}$ ]] || refuse "--wifi-country must be two capital letters, like US"
elif [ -n "$wifi_psk_file" ]; then
  refuse "--wifi-psk-file needs --wifi-ssid"
fi

if [ -z "$timezone" ]; then
  timezone=$(cat /etc/timezone 2>/dev/null || true)
  [ -n "$timezone" ] || timezone=UTC
fi
[[ $timezone =~ ^[A-Za-z0-9_+/-]+$ ]] || refuse "--timezone must look like Europe/London or UTC"
for server in $ntp; do [[ $server =~ ^[A-Za-z0-9.-]+$ ]] || refuse "--ntp: '$server' is not a host name"; done
case $release in ""|trixie|bookworm) ;; *) refuse "--release must be trixie or bookworm" ;; esac

# --------------------------------------------------------------------------- the bundle

[ -f "$bundle/SHA256SUMS" ] && [ -d "$bundle/wheels" ] \
  || refuse "no offline bundle in $bundle: run 'make bundle' first (or give --bundle DIR)"
ls "$bundle"/wheels/custodian_appliance-*.whl >/dev/null 2>&1 || refuse "the bundle in $bundle has no custodian wheel"
ls "$bundle"/wheels/pip-*.whl >/dev/null 2>&1 || refuse "the bundle in $bundle has no pip wheel"
(cd "$bundle" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1) || refuse "the bundle in $bundle does not match its SHA256SUMS"

# --------------------------------------------------------------------------- the image

is_xz=0
[ "$(head -c 6 "$image" | od -An -tx1 | tr -d ' \n')" = fd377a585a00 ] && is_xz=1
decompress() { if [ $is_xz = 1 ]; then xz -dc "$image"; else cat "$image"; fi; }

if [ -n "$sha256" ]; then
  if [ -f "$sha256" ]; then sha256=$(grep -oiE '\b[0-9a-f]{64}\b' "$sha256" | head -n1 || true); fi
  [[ $sha256 =~ ^[0-9a-fA-F]{64}$ ]] || refuse "--sha256 must be 64 hex digits (or a file holding them)"
  say "checking the image's SHA-256"
  actual=$(sha256sum "$image" | cut -d' ' -f1)
  [ "$actual" = "${sha256,,}" ] || refuse "the image's SHA-256 is $actual, not $sha256: a damaged or different download"
fi

if [ $is_xz = 1 ]; then
  image_size=$(xz --robot --list "$image" | awk '$1 == "totals" { print $5 }')
else
  image_size=$(stat -c %s "$image")
fi
[[ $image_size =~ ^[0-9]+$ ]] && [ "$image_size" -gt 0 ] || refuse "cannot tell the size of the image $image"

work=$(mktemp -d "${TMPDIR:-/tmp}/custodian-flash.XXXXXX")
trap 'rm -rf "$work"' EXIT
{ decompress 2>/dev/null || true; } | head -c 1048576 > "$work/head"
table=$(sfdisk -d "$work/head" 2>/dev/null || true)
part_line() { printf '%s\n' "$table" | grep -E "^[^ ]*$1 :" || true; }
[[ $(part_line 1) =~ type=(c|b|e) ]] && [[ $(part_line 2) =~ type=83 ]] \
  || refuse "$image does not look like Raspberry Pi OS: no MBR with a FAT boot partition and a Linux root partition"

# --------------------------------------------------------------------------- the target

target=$(readlink -f -- "$device" 2>/dev/null || printf '%s' "$device")
kind=""
if [[ $target == /dev/* ]] && [ ! -b "$target" ]; then
  # A card that is not plugged in, or a typo: never make a file in /dev (it would fill RAM and say "done").
  refuse "$device is not a block device: is the card plugged in? 'lsblk -dpo NAME,SIZE,RM,MODEL' lists the disks"
fi
if [ -b "$target" ]; then
  kind=block
elif [ -f "$target" ]; then
  kind="file"
elif [ ! -e "$target" ] && [ -d "$(dirname "$target")" ]; then
  kind=new
else
  refuse "$device is neither a block device nor a disk-image file"
fi
[ "$kind" != file ] || [ "$(readlink -f "$image")" != "$target" ] || refuse "the device is the image itself"

# Every disk and loop device under the system's own file systems and swap.
system_disks() {
  local target_dir src
  for target_dir in / /boot /boot/firmware /boot/efi /usr /var /home; do
    src=$(findmnt -rnvo SOURCE --target "$target_dir" 2>/dev/null || true)
    [ -b "$src" ] && lsblk -nrpso NAME,TYPE "$src" 2>/dev/null | awk '$2 == "disk" || $2 == "loop" { print $1 }'
  done
  awk 'NR > 1 { print $1 }' /proc/swaps | while read -r src; do
    [ -b "$src" ] && lsblk -nrpso NAME,TYPE "$src" 2>/dev/null | awk '$2 == "disk" || $2 == "loop" { print $1 }'
  done
  true
}

# Is this block device (or any partition of it) mounted or swapped on?
in_use() {
  local dev=$1 part
  for part in $(lsblk -nrpo NAME "$dev" 2>/dev/null); do
    [ -n "$(findmnt -rn -S "$part" 2>/dev/null)" ] && { echo "$part is mounted"; return 0; }
    grep -q "^$part " /proc/swaps && { echo "$part is swap in use"; return 0; }
  done
  return 1
}

# A loop device reading this device or file (e.g. a partition of it attached with an offset)
# that is mounted counts as the target being mounted.
loop_in_use() {
  local backing=$1 loop
  for loop in $(losetup -nO NAME -j "$backing" 2>/dev/null); do
    in_use "$loop" && return 0
    loop_in_use "$loop" && return 0   # a partition attached from that loop device in turn
  done
  return 1
}

target_size=0
description=$target
if [ "$kind" = block ]; then
  type=$(lsblk -dno TYPE "$target")
  [ "$type" != part ] || refuse "$target is a partition: give the whole card (e.g. /dev/sdb, not /dev/sdb1)"
  if system_disks | grep -qxF "$target"; then
    refuse "$target holds this computer's own system (/, /boot or swap): never the system disk"
  fi
  if why=$(in_use "$target") || why=$(loop_in_use "$target"); then
    refuse "$target is in use ($why): unmount it first (e.g. 'sudo umount ${target}*')"
  fi
  read -r removable hotplug <<< "$(lsblk -dno RM,HOTPLUG "$target" | awk '{ print $1, $2 }')"
  if [ "${removable:-0}" != 1 ] && [ "${hotplug:-0}" != 1 ] && [[ $target != /dev/mmcblk* ]] && [ $force = 0 ]; then
    refuse "$target is not a removable device (not an SD card or USB reader?): give --force if you are sure"
  fi
  [ -w "$target" ] || refuse "cannot write to $target: run flash.sh as root (sudo ./flash.sh ...)"
  target_size=$(blockdev --getsize64 "$target")
  model=$(lsblk -dno MODEL "$target" 2>/dev/null | sed 's/ *$//' || true)
  description="$target (${model:-no model name}, $((target_size / 1000000)) MB)"
elif [ "$kind" = file ]; then
  if why=$(loop_in_use "$target"); then
    refuse "$target is in use through a loop device ($why): unmount it first"
  fi
  target_size=$(stat -c %s "$target")
  description="disk-image file $target ($((target_size / 1000000)) MB)"
else
  target_size=$image_size
  description="new disk-image file $target"
fi
[ "$target_size" -ge "$image_size" ] \
  || refuse "$target is too small: $((target_size / 1000000)) MB ($target_size bytes), the image needs $((image_size / 1000000)) MB ($image_size bytes): use a larger card"

# --------------------------------------------------------------------------- what goes on the card

yaml_string() {   # a double-quoted YAML (and JSON) scalar of printable text
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}
yaml_list() {
  local out="" item
  for item in "$@"; do out+="${out:+, }$(yaml_string "$item")"; done
  printf '[%s]' "$out"
}
render() {   # render TEMPLATE OUT KEY=VALUE...
  local text key value
  text=$(<"$1")
  shift 2
  for pair in "$@"; do
    key=${pair%%=*} value=${pair#*=}
    text=${text//"@@$key@@"/"$value"}
  done
  printf '%s\n' "$text"
}

stage=$work/card
mkdir -p "$stage/custodian/$role"
instance_id="custodian-$role-$name-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
ntp_list=()
for server in $ntp; do ntp_list+=("$server"); done
render "$IMAGES/$role/user-data" "$stage/user-data" "NAME=$name" "TIMEZONE=$(yaml_string "$timezone")" \
  "SSH_KEYS=$(yaml_list ${ssh_keys[@]+"${ssh_keys[@]}"})" "NTP_SERVERS=$(yaml_list ${ntp_list[@]+"${ntp_list[@]}"})" \
  > "$stage/user-data"
render "$IMAGES/common/meta-data" "$stage/meta-data" "NAME=$name" "INSTANCE_ID=$instance_id" > "$stage/meta-data"
wifi_yaml=""
if [ -n "$wifi_ssid" ]; then
  wifi_yaml="  wifis:
    wlan0:
      dhcp4: true
      optional: true
      regulatory-domain: $(yaml_string "$wifi_country")
      access-points:
        $(yaml_string "$wifi_ssid"):
          password: $(yaml_string "$wifi_psk")"
fi
render "$IMAGES/common/network-config" "$stage/network-config" "WIFI=$wifi_yaml" > "$stage/network-config"
printf -v ssh_keys_q '%q' "$(printf '%s\n' ${ssh_keys[@]+"${ssh_keys[@]}"})"
render "$IMAGES/common/firstrun.sh" "$stage/firstrun.sh" "NAME=$(printf %q "$name")" \
  "TIMEZONE=$(printf %q "$timezone")" "SSH_KEYS=$ssh_keys_q" "WIFI_SSID=$(printf %q "$wifi_ssid")" \
  "WIFI_PSK=$(printf %q "$wifi_psk")" "WIFI_COUNTRY=$(printf %q "$wifi_country")" \
  "NTP_SERVERS=$(printf %q "$ntp")" > "$stage/firstrun.sh"

printf '%s\n' "$role" > "$stage/custodian/role"
stamp="written by flash.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); settings: appliance/config.py"
if [ "$role" = camera ]; then
  cat > "$stage/custodian/node.toml" <<EOF
# Custodian camera node $name, $stamp
[node]
name = "$name"
data_dir = "/var/lib/custodian"
central_url = "http://$host:$port"

[camera]
backend = "$backend"
EOF
  printf '%s\n' "$code" > "$stage/custodian/invite"
else
  cat > "$stage/custodian/central.toml" <<EOF
# Custodian central $name, $stamp
[central]
data_dir = "/srv/custodian"
ingest_port = $port
EOF
fi
cp "$IMAGES/common/firstboot.sh" "$IMAGES/common/install-bundle.sh" "$stage/custodian/"
cp "$IMAGES/$role"/* "$stage/custodian/$role/"
rm -f "$stage/custodian/$role/user-data"

# --------------------------------------------------------------------------- confirm

say "image:  $image ($image_size bytes$([ $is_xz = 1 ] && echo ', xz'))"
say "target: $description"
say "card:   $role '$name'$([ -n "$host" ] && echo ", central at $host:$port")"
if [ $yes = 0 ]; then
  expected=$(basename "$target")
  printf 'Everything on %s will be erased. Type its name (%s) to go on: ' "$description" "$expected" >&2
  answer=""
  read -r answer || true
  [ "$answer" = "$expected" ] || [ "$answer" = "$target" ] \
    || refuse "you typed '$answer', not '$expected'"
fi

# --------------------------------------------------------------------------- write

bmap=""
for candidate in "$image.bmap" "${image%.xz}.bmap"; do [ -f "$candidate" ] && bmap=$candidate && break; done
[ "$kind" = new ] && : > "$target"
if command -v bmaptool >/dev/null 2>&1 && [ -n "$bmap" ]; then
  say "writing with bmaptool (map: $bmap)"
  bmaptool copy --bmap "$bmap" "$image" "$target"
else
  bmap=""
  say "writing with dd"
  decompress | dd of="$target" bs=4M iflag=fullblock conv=notrunc,fsync status=progress
fi
sync
[ "$kind" = block ] && blockdev --flushbufs "$target"

# Read back what was written and compare it with the image (only the mapped ranges with a bmap).
say "reading back $image_size bytes ($((image_size / 1000000)) MB) to compare them with the image"
if [ -n "$bmap" ]; then
  block_size=$(sed -n 's:.*<BlockSize> *\([0-9]*\) *</BlockSize>.*:\1:p' "$bmap")
  sed -n 's:.*<Range[^>]*> *\([0-9-]*\) *</Range>.*:\1:p' "$bmap" | while read -r range; do
    first=${range%-*} last=${range#*-}
    offset=$((first * block_size)) length=$(((last - first + 1) * block_size))
    [ $((offset + length)) -le "$image_size" ] || length=$((image_size - offset))
    cmp -s -n "$length" -i "$offset:$offset" <(decompress) "$target" \
      || { say "read-back differs from the image in blocks $range: the card may be faulty"; exit 3; }
  done
else
  # dd shows how far the read-back is: a whole card takes minutes.
  cmp -n "$image_size" <(decompress) \
      <(dd if="$target" bs=4M count="$image_size" iflag=count_bytes,fullblock status=progress) \
    || { say "read-back differs from the image: the card may be faulty"; exit 3; }
  # bash does not wait for a <(...) by itself: dd's last lines (bytes copied) come before the verdict.
  wait $! 2>/dev/null || true
fi
say "read-back: $image_size bytes identical to the image"

# --------------------------------------------------------------------------- customise the boot partition

table=$(sfdisk -d "$target")
sector=$(printf '%s\n' "$table" | sed -n 's/^sector-size: *\([0-9]*\)/\1/p')
start=$(printf '%s\n' "$(part_line 1)" | sed -n 's/.*start= *\([0-9]*\).*/\1/p')
fat="$target@@$(( start * ${sector:-512} ))"
mdir -i "$fat" ::/ >/dev/null || { say "the boot partition of $target is not a FAT file system"; exit 3; }
if [ -z "$release" ]; then
  if mdir -b -i "$fat" ::/meta-data >/dev/null 2>&1 || mdir -b -i "$fat" ::/user-data >/dev/null 2>&1; then
    release=trixie
  else
    release=bookworm
  fi
fi
say "customising the boot partition ($release: $([ $release = trixie ] && echo cloud-init || echo firstrun.sh))"
if [ $release = trixie ]; then
  rm -f "$stage/firstrun.sh"
else
  rm -f "$stage/user-data" "$stage/meta-data" "$stage/network-config"
  mtype -i "$fat" ::/cmdline.txt | tr -d '\r\n' > "$stage/cmdline.txt"
  sed -i 's| systemd.run.*||' "$stage/cmdline.txt"
  printf ' systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n' \
    >> "$stage/cmdline.txt"
fi
if [ "$role" = central ]; then   # the serial console for the terminal UI
  mtype -i "$fat" ::/config.txt > "$stage/config.txt"
  grep -qx 'enable_uart=1' "$stage/config.txt" || printf '\n[all]\n# Custodian: the terminal UI on the serial line\nenable_uart=1\n' >> "$stage/config.txt"
fi
cp -r "$bundle" "$stage/custodian/bundle"
(cd "$stage" && find . -type d | sort) | while read -r dir; do
  [ "$dir" = . ] || mmd -D o -i "$fat" "::/${dir#./}" 2>/dev/null || true
done
(cd "$stage" && find . -type f | sort) > "$work/files"
while read -r file; do
  mcopy -o -i "$fat" "$stage/${file#./}" "::/${file#./}"
done < "$work/files"
sync
[ "$kind" = block ] && blockdev --flushbufs "$target"

count=0
while read -r file; do
  mcopy -n -i "$fat" "::/${file#./}" "$work/readback" 2>/dev/null \
    && cmp -s "$stage/${file#./}" "$work/readback" \
    || { say "read-back of ${file#./} on the boot partition differs: the card may be faulty"; exit 3; }
  count=$((count + 1))
done < "$work/files"
say "read-back: $count files on the boot partition identical to what was written"

say "done: $description is a Custodian $role ('$name')."
if [ "$role" = camera ]; then
  say "put it in the camera and power it on: it enrols with its pairing code and logs a pairing fingerprint"
  say "('journalctl -u custodian-node'); compare it with the central's camera screen, then the Director approves the placement."
else
  say "boot it, then follow docs/provisioning.md, 'The central's first start' (the Director sets her passphrase)."
fi
