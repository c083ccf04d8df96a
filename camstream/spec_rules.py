"""The checks the CRD makes with CEL rules, written once more for Python, alike to the letter.

Who calls this: spec.py, for every CameraStream it parses (standalone mode,
streams stored before a rule existed, the worker's own second look); the
tests, which hold each pattern and message against crds/camerastream.yaml
(tests/unit/test_spec_rules.py on generated inputs, and
tests/cluster/test_chart_dryrun.py against a real API server). A stream
refused at admission and one refused here read alike: the same message, for
the same field. Pure: strings in, a message or None out.

The patterns use only what RE2 (CEL's `matches`) and Python's `re` read
alike: character classes, groups, `?`, `*`, anchors and `(?i:...)`.
"""

from __future__ import annotations

import re

# URLs whose scheme carries credentials inside TLS; any other sends them
# readable on the wire. A pattern rather than urlsplit, so that the CRD's CEL
# rule (RE2) and this check agree on every string.
TLS_URL_PATTERN = r"^(?i:rtsps|https)://"

# A Secret reference is a name in the stream's own namespace (a DNS subdomain,
# as Kubernetes names Secrets) and a key of it (as Kubernetes keys Secret
# data, minus what Kubernetes itself refuses: "." and a leading ".."). Nothing
# else can reach an API path or a file name. The CRD's CEL rules use these
# very patterns and messages (tests/unit/test_spec_rules.py).
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_NAME_MAX = 253
SECRET_NAME_MESSAGE = (
    "must name a Secret in the stream's own namespace: lower-case letters, digits, "
    "'-' and '.', at most 253 characters"
)
SECRET_KEY_PATTERN = r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$"
SECRET_KEY_MAX = 253
SECRET_KEY_MESSAGE = (
    "must be a key of the Secret: letters, digits, '-', '_' and '.', "
    "not starting with '..', at most 253 characters"
)
# An srt pull url with a passphrase in its query (srt://host:port?passphrase=...)
# would store the secret in the resource, readable by anyone who may read
# streams; it is refused at admission, before it reaches etcd. The query is
# what follows the first "?" that comes before any "#", as urlsplit reads it.
SRT_URL_PASSPHRASE_PATTERN = r"^[^?#]*[?][^#]*(?i:passphrase)"
SRT_URL_PASSPHRASE_MESSAGE = (
    "the passphrase must not be written in the url; use spec.source.srt.passphraseSecretRef"
)
INSECURE_CREDENTIALS_MESSAGE = (
    "credentials would be sent without TLS: use an rtsps:// or https:// url, "
    "or set spec.source.allowInsecureCredentials: true"
)
LOCAL_FILES_MESSAGE = (
    "file reads the worker's own disk and is for standalone mode only "
    "(camstream run); in a cluster use http or rtsp"
)


def secret_name_problem(name: object) -> str | None:
    """Why `name` cannot be a Secret reference's name, or None when it can."""
    if not isinstance(name, str) or len(name) > SECRET_NAME_MAX:
        return SECRET_NAME_MESSAGE
    return None if re.fullmatch(SECRET_NAME_PATTERN, name) else SECRET_NAME_MESSAGE


def secret_key_problem(key: object) -> str | None:
    """Why `key` cannot be a Secret reference's key, or None when it can."""
    if not isinstance(key, str) or len(key) > SECRET_KEY_MAX:
        return SECRET_KEY_MESSAGE
    return None if re.fullmatch(SECRET_KEY_PATTERN, key) else SECRET_KEY_MESSAGE
