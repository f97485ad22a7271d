/*
 * The firmware's side of platform.js, for `gatehouse sim device --payload-script`:
 * deviceToRaw turns what the device sends (its property post, its replies) into the
 * frames platform.js reads; rawToDevice reads the frames platform.js writes.
 */
var REPORT = 0x00, SET = 0x01, REPORT_REPLY = 0x02, SET_REPLY = 0x03;
var REBOOT = 0x04, SERVICE_REPLY = 0x05;

function deviceToRaw(message) {
    var view;
    if (message.method === 'thing.event.property.post') {
        view = new DataView(new ArrayBuffer(8));
        view.setUint8(0, REPORT);
        view.setInt32(1, parseInt(message.id, 10));
        view.setInt16(5, Math.round(message.params.temperature * 10));
        view.setUint8(7, message.params.humidity);
    } else if (message.method === 'thing.service.reboot') {
        view = new DataView(new ArrayBuffer(8));
        view.setUint8(0, SERVICE_REPLY);
        view.setInt32(1, parseInt(message.id, 10));
        view.setUint16(5, message.code);
        view.setUint8(7, message.data && message.data.ok ? 1 : 0);
    } else {
        view = new DataView(new ArrayBuffer(7));
        view.setUint8(0, SET_REPLY);
        view.setInt32(1, parseInt(message.id, 10));
        view.setUint16(5, message.code);
    }
    return Array.prototype.slice.call(new Uint8Array(view.buffer));
}

function rawToDevice(bytes) {
    var frame = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) {
        frame[i] = bytes[i] & 0xff;
    }
    var view = new DataView(frame.buffer);
    var command = view.getUint8(0);
    var id = '' + view.getInt32(1);
    if (command === SET) {
        return {method: 'thing.service.property.set', id: id, params: {interval: view.getUint16(5)}};
    }
    if (command === REBOOT) {
        return {method: 'thing.service.reboot', id: id, params: {delay: view.getUint16(5)}};
    }
    // 0x02 (a report's reply) and 0xff (any other reply): an id and a code.
    return {id: id, code: view.getUint16(5), reply: command === REPORT_REPLY ? 'report' : 'other'};
}
