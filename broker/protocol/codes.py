"""Reply codes the platforms use on `..._reply` topics (docs/protocol.md, section 7)."""

from __future__ import annotations

OK = 200
BAD_REQUEST = 400  # SDK generic: the request is not what the topic expects
SERVER_ERROR = 500
DEVICE_NOT_FOUND = 705
DEVICE_DISABLED = 723
NOT_GATEWAYS_SUB_DEVICE = 740
SIGN_FAILED = 742
SSL_REQUIRED = 746
DYNAMIC_ACTIVATION_DENIED = 770
SUB_DEVICE_DIRECT = 771
PAYLOAD_FORMAT_ERROR = 1220
TOPO_ADD_FAILED = 1255
TOPO_DELETE_FAILED = 1256
TOO_MANY_REQUESTS = 429  # SDK generic; gatehouse records it for a device over its connect limit
