#!/usr/bin/env bash
# Custodian's first-boot setup, run once as root: by cloud-init's runcmd (trixie) or by
# firstrun.sh (bookworm). flash.sh put everything it needs in <boot>/custodian/:
#   role                      camera | central
#   node.toml | central.toml  the configuration (-> /etc/custodian/)
#   invite                    camera: the one-time pairing code (-> /var/lib/custodian/, 0600)
#   bundle/                   the offline wheels (make bundle)
#   camera/ | central/        units and files from images/<role>/
#   install-bundle.sh
# Every step can run again. Until it has finished once (/var/lib/custodian-firstboot.done),
# custodian-firstboot.service runs it again, at each boot once the network is up and every
# two minutes after a failure (a power cut mid-way, no network yet for apt). What it did is in /var/log/custodian-firstboot.log.
set -euo pipefail

boot=/boot/firmware
[ -d "$boot/custodian" ] || boot=/boot
src=$boot/custodian
done_mark=/var/lib/custodian-firstboot.done
exec > >(tee -a /var/log/custodian-firstboot.log) 2>&1
echo "== custodian first boot $(date -Is)"
[ ! -e "$done_mark" ] || { echo "already done ($done_mark)"; exit 0; }
role=$(cat "$src/role")
venv=/opt/custodian/.venv

# 0. Run again at the next boot unless this run finishes.
cat > /etc/systemd/system/custodian-firstboot.service <<UNIT
[Unit]
Description=Custodian first-boot setup (until it has finished once)
After=network-online.target
Wants=network-online.target
ConditionPathExists=!$done_mark
[Service]
Type=oneshot
ExecStart=/bin/bash $src/firstboot.sh
Restart=on-failure
RestartSec=120
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable custodian-firstboot.service

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
  # picamera2 comes from apt (cloud-init's packages: asked for it; tried again here). Without
  # it the camera cannot record: stop here, and the next boot tries again.
  if grep -q '^backend = "picamera2"' "$src/node.toml" && ! python3 -c 'import picamera2' 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-picamera2 \
      || { echo "python3-picamera2 could not be installed (no network?): trying again in two minutes"
           systemctl start --no-block custodian-firstboot.service || true; exit 1; }
  fi
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
systemctl disable custodian-firstboot.service
touch "$done_mark"
sync
echo "== custodian first boot done: role $role"
