// The Create a Product dialog's rules, as Quectel's "Manage Product" states them and the
// API enforces them (README, Products): which fields a choice brings, the body it makes,
// and which field an API refusal is about.

export const DEVICE_TYPES = [
  { value: "direct", label: "Directly connected device",
    help: "Integrates a communication module and connects to the platform itself." },
  { value: "gateway", label: "Gateway",
    help: "Mounts sub-devices over 485, Zigbee or RS232 and gives them their way in." },
  { value: "subdevice", label: "Gateway sub-device",
    help: "Does not connect directly: it comes in through a gateway." },
];

export const NETWORKS = {
  direct: ["2G", "3G", "4G", "5G", "Wi-Fi", "NB-IoT", "Bluetooth"],
  gateway: ["2G", "3G", "4G", "5G", "Wi-Fi"],
  subdevice: [],
};

export const PLATFORMS = [
  { value: "DeveloperCenter", label: "Developer Center (Quectel's NB broker)" },
  { value: "ChinaTelecomAEP", label: "China Telecom AEP" },
];
export const ENCRYPTIONS = [
  { value: "DTLS", label: "DTLS" },
  { value: "plaintext", label: "Plaintext (no encryption)" },
];
export const POWER_SAVING = [
  { value: "PSM", label: "PSM mode" },
  { value: "DRX", label: "DRX mode" },
  { value: "eDRX", label: "eDRX mode" },
];
export const EDRX_MIN = 20.48;
export const EDRX_MAX = 10485.76;

// Which of the conditional fields the choices so far bring.
export function shown(choice) {
  const nb = choice.deviceType === "direct" && choice.networkMethod === "NB-IoT";
  const aep = nb && choice.connectedPlatform === "ChinaTelecomAEP";
  const sub = choice.deviceType === "subdevice";
  return {
    networkMethod: !sub,
    connectedPlatform: nb,
    encryption: aep,
    powerSaving: aep,
    edrxCycle: aep && choice.powerSaving === "eDRX",
    qmode: aep && choice.powerSaving === "DRX",
    specifiedGateway: sub,
    gatewayProductKeys: sub && choice.specifiedGateway === "enabled",
    gatewayAccessMode: sub,
  };
}

// The products?action=create body of the choices (only the fields they bring).
export function productBody(choice) {
  const on = shown(choice);
  const body = {
    productName: { defaultValue: choice.productName, i18nValue: {} },
    category: choice.category,
    deviceType: choice.deviceType,
    // EnOS's mandatory create fields: productType follows the device type.
    productType: choice.deviceType === "gateway" ? "Gateway" : "Device",
    dataFormat: choice.dataFormat,
    biDirectionalAuth: false,
  };
  if (choice.modelId) body.modelId = choice.modelId;
  if (on.networkMethod && choice.networkMethod) body.networkMethod = choice.networkMethod;
  if (on.connectedPlatform) body.connectedPlatform = choice.connectedPlatform;
  if (on.encryption) body.encryption = choice.encryption;
  if (on.powerSaving) {
    body.powerSaving = { mode: choice.powerSaving };
    if (on.edrxCycle) body.powerSaving.edrxCycle = choice.edrxCycle === "" ? null : Number(choice.edrxCycle);
    if (on.qmode) body.powerSaving.qmode = Boolean(choice.qmode);
  }
  if (on.specifiedGateway) {
    const enabled = choice.specifiedGateway === "enabled";
    body.specifiedGateway = { enabled, gatewayProductKeys: enabled ? choice.gatewayProductKeys : [] };
    body.gatewayAccessMode = choice.gatewayAccessMode;
  }
  return body;
}

// The dialog's fields, most specific first: a refusal naming edrxCycle is about the
// cycle, not the power-saving mode that holds it.
const FIELDS = [
  "edrxCycle", "qmode", "gatewayProductKeys", "gatewayDevices", "specifiedGateway",
  "gatewayAccessMode", "encryption", "powerSaving", "connectedPlatform", "networkMethod",
  "dataFormat", "productName", "deviceType", "category", "modelId",
];

// The field an API refusal is about, or "" for the form as a whole. The API says
// "product.FIELD...: message"; rules that span fields name theirs in the message.
export function refusedField(message, among = FIELDS) {
  // Before any word search: the name given may itself be a field's word.
  if (/^a product named /.test(message)) return "productName";
  const [where, ...rest] = message.split(": ");
  const text = rest.length ? rest.join(": ") : message;
  const named = among
    .map((f) => ({ f, at: text.search(new RegExp(`\\b${f}\\b`)) }))
    .filter((m) => m.at >= 0)
    .sort((a, b) => a.at - b.at);
  if (named.length) return named[0].f;
  const located = where.match(/^product\.([A-Za-z]+)/);
  if (located && among.includes(located[1])) return located[1];
  if (/thing model|modelId/.test(message)) return among.includes("modelId") ? "modelId" : "category";
  if (/category/.test(message)) return "category";
  if (/sub-device product|gateway/.test(message) && among.includes("deviceType")) return "deviceType";
  return "";
}
