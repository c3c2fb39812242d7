#!/usr/bin/env bash
# Custodian's first-boot setup, run once as root: by cloud-init's runcmd (trixie) or by
# firstrun.sh (bookworm). flash.sh put everything it needs in <boot>/custodian/:
#   role                      camera | central
#   node.toml | central.toml  the configuration (-> /etc/custodian/)
#   invite                    camera: the one-time pairing code (-> /var/lib/custodian/, 0600)
#   bundle/                   the offline wheels (make bundle)
#   camera/ | central/        units and files from images/<role>/
#   install-bundle.sh
# Every step can run again (a power cut mid-way): the next boot's runcmd does not rerun
# it, so IT runs it by hand (`sudo bash /boot/firmware/custodian/firstboot.sh`).
# What it did is in /var/log/custodian-firstboot.log.
set -euo pipefail

boot=/boot/firmware
[ -d "$boot/custodian" ] || boot=/boot
src=$boot/custodian
exec > >(tee -a /var/log/custodian-firstboot.log) 2>&1
echo "== custodian first boot $(date -Is)"
role=$(cat "$src/role")
venv=/opt/custodian/.venv

# 1. The service account (the daemons run as it; group custodian may use the central's API).
getent group custodian >/dev/null || groupadd --system custodian
id custodian >/dev/null 2>&1 || useradd --system --gid custodian --home-dir /nonexistent \
  --no-create-home --shell /usr/sbin/nologin custodian

# 2. Custodian from the bundle, into a venv that sees apt's picamera2.
if [ -d "$src/bundle" ]; then
  bash "$src/install-bundle.sh" "$src/bundle" "$venv"
fi
ln -sf "$venv/bin/custodian" /usr/local/bin/custodian

# 3. Configuration and units.
install -d -m 0755 /etc/custodian
install -m 0640 -o root -g custodian "$src/$role.toml" "/etc/custodian/$role.toml"
for unit in "$src/$role"/*.service; do
  install -m 0644 "$unit" /etc/systemd/system/
done

if [ "$role" = camera ]; then
  usermod -a -G video custodian
  # picamera2 comes from apt (cloud-init's packages: asked for it; retried here if that failed).
  for attempt in 1 2 3 4 5; do
    python3 -c 'import picamera2' 2>/dev/null && break
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-picamera2 && break
    echo "python3-picamera2 not installed yet (attempt $attempt); retrying in 30 s"
    sleep 30
  done
  # The pairing code leaves the boot partition (readable by anyone with the card) at once.
  install -d -m 0750 -o custodian -g custodian /var/lib/custodian
  if [ -f "$src/invite" ]; then
    install -m 0600 -o custodian -g custodian "$src/invite" /var/lib/custodian/invite
    rm -f "$src/invite"
  fi
  systemctl daemon-reload
  systemctl enable custodian-node.service
  systemctl start --no-block custodian-node.service
else
  # The console: the terminal UI on tty1 and the serial line, for the `console` account only.
  install -m 0755 "$src/central/custodian-console" /usr/local/bin/custodian-console
  grep -qx /usr/local/bin/custodian-console /etc/shells || echo /usr/local/bin/custodian-console >> /etc/shells
  id console >/dev/null 2>&1 || useradd --create-home --gid custodian --shell /usr/local/bin/custodian-console console
  usermod --gid custodian --shell /usr/local/bin/custodian-console --lock console
  install -D -m 0644 "$src/central/getty-autologin.conf" /etc/systemd/system/getty@tty1.service.d/custodian.conf
  install -D -m 0644 "$src/central/serial-getty-autologin.conf" \
    /etc/systemd/system/serial-getty@.service.d/custodian.conf
  # SSH: people in group custodian get the terminal UI and nothing else.
  install -D -m 0644 "$src/central/sshd-custodian.conf" /etc/ssh/sshd_config.d/50-custodian.conf
  # Security updates, unattended.
  install -D -m 0644 "$src/central/20auto-upgrades" /etc/apt/apt.conf.d/20auto-upgrades
  install -d -m 0750 -o custodian -g custodian /srv/custodian
  systemctl daemon-reload
  systemctl enable custodian-central.service serial-getty@serial0.service
  systemctl restart getty@tty1.service || true
fi

# 4. SSH for IT's administrator (Raspberry Pi OS leaves it off), with keys only.
systemctl enable --now ssh.service || systemctl enable --now sshd.service || true
systemctl reload ssh.service 2>/dev/null || true

# 5. No secret stays on the boot partition: the Wi-Fi passphrase was applied at first boot.
if grep -q 'password:' "$boot/network-config" 2>/dev/null; then
  sed -i 's/^\( *password:\).*/\1 "(removed after first boot)"/' "$boot/network-config"
fi
rm -rf "$src/bundle"
sync
touch /var/lib/custodian-firstboot.done
echo "== custodian first boot done: role $role"
