#!/usr/bin/env bash
# Install Custodian from the offline bundle into a virtual environment that also sees
# the system's packages (picamera2 comes from apt, not PyPI: FIELD-NOTES).
#
#   install-bundle.sh BUNDLE VENV
#
# No internet and no python3-venv needed: the venv is made without pip, and pip runs
# from its own wheel in the bundle.
set -euo pipefail
bundle=$1 venv=$2
(cd "$bundle" && sha256sum --quiet -c SHA256SUMS) || { echo "the bundle on this card is damaged" >&2; exit 1; }
pip_wheel=$(ls "$bundle"/wheels/pip-*.whl | head -n1)
python3 -m venv --without-pip --system-site-packages "$venv"
# Only the bundle counts: no pip configuration or PIP_* variable of this machine applies.
env -i PATH="$PATH" HOME=/nonexistent PIP_CONFIG_FILE=/dev/null \
  "$venv/bin/python" "$pip_wheel/pip" install --quiet --no-index --no-cache-dir --disable-pip-version-check \
  --find-links "$bundle/wheels" custodian-appliance
"$venv/bin/custodian" --help >/dev/null
echo "custodian installed in $venv"
