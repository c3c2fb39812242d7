#!/bin/bash
# Raspberry Pi OS bookworm has no cloud-init: like Raspberry Pi Imager, flash.sh puts this
# script on the boot partition and adds `systemd.run=` to cmdline.txt, so the first boot
# runs it once (then reboots). It does what user-data and network-config do on trixie,
# runs Custodian's firstboot.sh, and removes itself and its cmdline.txt entry (it holds
# the Wi-Fi passphrase). flash.sh fills in the @@...@@ fields (shell-quoted).
set +e

boot=/boot/firmware
[ -f "$boot/cmdline.txt" ] || boot=/boot
name=@@NAME@@
timezone=@@TIMEZONE@@
ssh_keys=@@SSH_KEYS@@
wifi_ssid=@@WIFI_SSID@@
wifi_psk=@@WIFI_PSK@@
wifi_country=@@WIFI_COUNTRY@@
ntp_servers=@@NTP_SERVERS@@
role=$(cat "$boot/custodian/role")

# Host name.
current=$(tr -d ' \t\n\r' < /etc/hostname)
echo "$name" > /etc/hostname
sed -i "s/127.0.1.1.*$current/127.0.1.1\t$name/g" /etc/hosts

# IT's administrator: the image's first user renamed, password locked, SSH keys only.
first=$(getent passwd 1000 | cut -d: -f1)
if [ -n "$first" ] && [ "$first" != itadmin ]; then
  usermod -l itadmin "$first" && groupmod -n itadmin "$first" 2>/dev/null
  usermod -d /home/itadmin -m itadmin
elif [ -z "$first" ]; then
  useradd -m -s /bin/bash -G adm,sudo itadmin
fi
usermod -L itadmin
install -d -m 0700 -o itadmin -g itadmin /home/itadmin/.ssh
printf '%s\n' "$ssh_keys" > /home/itadmin/.ssh/authorized_keys
chown itadmin:itadmin /home/itadmin/.ssh/authorized_keys
chmod 0600 /home/itadmin/.ssh/authorized_keys
echo 'itadmin ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/010_itadmin-nopasswd
chmod 0440 /etc/sudoers.d/010_itadmin-nopasswd
rm -f /etc/ssh/sshd_config.d/rename_user.conf
printf 'PasswordAuthentication no\nPermitRootLogin no\n' > /etc/ssh/sshd_config.d/40-custodian-keys.conf
systemctl enable ssh

if [ "$role" = central ]; then
  getent group custodian >/dev/null || groupadd custodian
  id console >/dev/null 2>&1 || useradd -m -g custodian -s /usr/local/bin/custodian-console console
  usermod -L console
fi

# Wi-Fi through NetworkManager, if flash.sh was given one.
if [ -n "$wifi_ssid" ]; then
  [ -n "$wifi_country" ] && raspi-config nonint do_wifi_country "$wifi_country"
  rfkill unblock wifi
  conn=/etc/NetworkManager/system-connections/custodian-wifi.nmconnection
  cat > "$conn" <<WIFI
[connection]
id=custodian-wifi
type=wifi
autoconnect=true
[wifi]
mode=infrastructure
ssid=$wifi_ssid
[wifi-security]
key-mgmt=wpa-psk
psk=$wifi_psk
[ipv4]
method=auto
[ipv6]
method=auto
WIFI
  chmod 0600 "$conn"
fi

# Clock and time zone.
timedatectl set-timezone "$timezone" 2>/dev/null || ln -sf "/usr/share/zoneinfo/$timezone" /etc/localtime
if [ -n "$ntp_servers" ]; then
  install -d /etc/systemd/timesyncd.conf.d
  printf '[Time]\nNTP=%s\n' "$ntp_servers" > /etc/systemd/timesyncd.conf.d/custodian.conf
fi
systemctl enable systemd-timesyncd

# Custodian itself (its log: /var/log/custodian-firstboot.log). This early in the first boot
# there may be no network for apt (picamera2, unattended-upgrades): firstboot.sh installs
# custodian-firstboot.service, which runs it again after this reboot until it finishes.
if [ "$role" = central ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unattended-upgrades
fi
bash "$boot/custodian/firstboot.sh"

# Leave no trace of this script (it holds the Wi-Fi passphrase).
rm -f "$boot/firstrun.sh"
sed -i 's| systemd.run.*||g' "$boot/cmdline.txt"
exit 0
