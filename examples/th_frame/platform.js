/*
 * The product's data-parsing script for a binary temperature/humidity sensor, written
 * to Alibaba IoT Platform's contract (ES5; upload it unchanged to either platform).
 * Every frame is big-endian: a command byte, a 32-bit request id, then fields.
 *
 * Device to platform                       Platform to device
 *   0x00 report  id temp:int16 (0.1 C)       0x02 report reply  id code:uint16
 *               hum:uint8 (%)                0x01 set interval  id seconds:uint16
 *   0x03 set reply      id code:uint16       0x04 call reboot   id delay:uint16
 *   0x05 service reply  id code:uint16       0xff any other reply  id code:uint16
 *                       ok:uint8
 */
var REPORT = 0x00, SET = 0x01, REPORT_REPLY = 0x02, SET_REPLY = 0x03;
var REBOOT = 0x04, SERVICE_REPLY = 0x05, OTHER_REPLY = 0xff;

function unsigned(bytes) {
    // The platform hands bytes over as Java does: -128 to 127.
    var frame = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) {
        frame[i] = bytes[i] & 0xff;
    }
    return new DataView(frame.buffer);
}

function rawDataToProtocol(bytes) {
    var view = unsigned(bytes);
    var command = view.getUint8(0);
    var id = '' + view.getInt32(1);
    if (command === REPORT) {
        return {
            method: 'thing.event.property.post',
            id: id,
            version: '1.0',
            params: {temperature: view.getInt16(5) / 10, humidity: view.getUint8(7)}
        };
    }
    if (command === SET_REPLY) {
        return {id: id, version: '1.0', code: view.getUint16(5), data: {}};
    }
    if (command === SERVICE_REPLY) {
        return {id: id, version: '1.0', code: view.getUint16(5), data: {ok: view.getUint8(7) === 1}};
    }
    throw new Error('unknown command byte ' + command);
}

function frame(command, id, size) {
    var view = new DataView(new ArrayBuffer(size));
    view.setUint8(0, command);
    view.setInt32(1, parseInt(id, 10) || 0);
    return view;
}

function bytesOf(view) {
    return Array.prototype.slice.call(new Uint8Array(view.buffer));
}

function protocolToRawData(json) {
    var method = json.method;
    var view;
    if (method === 'thing.service.property.set') {
        view = frame(SET, json.id, 7);
        view.setUint16(5, json.params.interval);
    } else if (method === 'thing.service.reboot') {
        view = frame(REBOOT, json.id, 7);
        view.setUint16(5, json.params.delay);
    } else if (method === 'thing.event.property.post') {
        view = frame(REPORT_REPLY, json.id, 7);
        view.setUint16(5, json.code);
    } else {
        view = frame(OTHER_REPLY, json.id, 7);
        view.setUint16(5, json.code);
    }
    return bytesOf(view);
}
