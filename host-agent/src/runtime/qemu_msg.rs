//! A QEMU guest's message endpoint (`docs/messages.md`, "QEMU guests"): the QEMU arguments
//! that connect one chardev to the enclave's mediator socket and show it to the guest as a
//! virtio-serial port or a 16550 UART ([`MsgPort`]), and a tiny test firmware that speaks the
//! mediator's frames over the UART ([`uart_msg_firmware`]).
//!
//! The agent binds the socket (`mediator::server`, `<data-dir>/msg/<enclave>.sock`) before QEMU
//! starts; QEMU connects to it as a client and reconnects once a second when the connection
//! drops (an agent restart, or the agent closing a stream that sent a bad frame). What arrives
//! on that connection is attributed to the enclave the socket is bound to: the guest never
//! names itself. Bytes a guest writes while the chardev is not connected are dropped by QEMU,
//! so a guest waits for the mediator's HELLO (the first frame of every connection) before it
//! sends, and treats a new HELLO as a new connection.

use std::path::Path;

use crate::plan::MsgPort;

/// The chardev's id on QEMU's command line.
pub const CHARDEV_ID: &str = "tribune-msg";
/// The virtio-serial port's name (`/dev/virtio-ports/<name>` in a Linux guest).
pub const VIRTIO_PORT_NAME: &str = "org.tribune.msg.0";
/// The virtio-serial bus the port sits on (its own, so it never clashes with a guest's).
const VIRTIO_BUS_ID: &str = "tribune-msg-bus";

/// A value inside a QEMU `-chardev`/`-device` option list: commas are doubled.
fn qemu_value(v: &str) -> String {
    v.replace(',', ",,")
}

/// The arguments that give the guest its message endpoint on `socket` (none for
/// [`MsgPort::Off`]). `reconnect_ms`: QEMU takes `reconnect-ms=` (9.2+; `reconnect=`, in
/// seconds, before).
pub fn msg_port_args(port: MsgPort, socket: &Path, reconnect_ms: bool) -> Vec<String> {
    let device: [String; 2] = match port {
        MsgPort::Off => return Vec::new(),
        MsgPort::VirtioSerial => [
            "-device".into(),
            format!(
                "virtserialport,bus={VIRTIO_BUS_ID}.0,chardev={CHARDEV_ID},name={VIRTIO_PORT_NAME}"
            ),
        ],
        // Our arguments come before the spec's own, so this is COM1 (0x3F8) even when the
        // spec adds `-serial` ports of its own.
        MsgPort::Uart => ["-serial".into(), format!("chardev:{CHARDEV_ID}")],
    };
    let reconnect = if reconnect_ms {
        "reconnect-ms=1000"
    } else {
        "reconnect=1"
    };
    let mut argv = vec![
        "-chardev".into(),
        format!(
            "socket,id={CHARDEV_ID},path={},{reconnect}",
            qemu_value(&socket.display().to_string())
        ),
    ];
    if port == MsgPort::VirtioSerial {
        argv.extend([
            "-device".into(),
            format!("virtio-serial-pci,id={VIRTIO_BUS_ID}"),
        ]);
    }
    argv.extend(device);
    argv
}

/// Bytes of [`uart_msg_firmware`]'s code.
const CODE_BYTES: usize = 0x63;
/// Size QEMU requires of a PC BIOS image.
const FIRMWARE_BYTES: usize = 64 * 1024;
/// Where [`uart_msg_firmware`]'s canned frames start in the image.
const FRAMES_AT: usize = 0x100;
const _: () = assert!(CODE_BYTES <= FRAMES_AT);
/// Guest-physical address where [`uart_msg_firmware`] logs every byte it reads from the UART.
pub const UART_LOG_ADDR: u64 = 0x1000;
/// Most bytes it logs (the log ends below 0xF000).
pub const UART_LOG_BYTES_MAX: usize = 0xE000;
/// Guest-physical address of its 16-bit count of logged bytes (written after each byte).
pub const UART_COUNT_ADDR: u64 = 0x600;

/// A BIOS image that talks to the mediator over COM1 ([`MsgPort::Uart`]), by polling the
/// 16550's line status register (0x3FD): it reads one frame (the mediator's HELLO: the chardev
/// is connected), writes `frames` (already encoded with `tribune_msg::wire`, e.g. a RECEIVE and
/// a SEND), then reads forever. Every byte it reads, the HELLO included, goes to a log in
/// guest RAM at [`UART_LOG_ADDR`], its count at [`UART_COUNT_ADDR`], for the host to read
/// over QMP. `None` if `frames` do not fit the image.
pub fn uart_msg_firmware(frames: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(frames.len()).ok()?;
    if FRAMES_AT + frames.len() > FIRMWARE_BYTES - 16 {
        return None;
    }
    let [len_lo, len_hi] = len.to_le_bytes();
    let [at_lo, at_hi] = (FRAMES_AT as u16).to_le_bytes();
    // Offsets in comments; jumps are relative to the next instruction.
    #[rustfmt::skip]
    let code: [u8; CODE_BYTES] = [
        0x31, 0xC0,             // 00 xor ax, ax
        0x8E, 0xD8,             // 02 mov ds, ax
        0x8E, 0xC0,             // 04 mov es, ax
        0x8E, 0xD0,             // 06 mov ss, ax
        0xBC, 0x00, 0x0F,       // 08 mov sp, 0x0F00
        0xFC,                   // 0B cld
        0xBF, 0x00, 0x10,       // 0C mov di, 0x1000        ; the log
        0xE8, 0x28, 0x00,       // 0F call getc             ; the HELLO's length: u32 BE,
        0xE8, 0x25, 0x00,       // 12 call getc             ; its top half ignored (a HELLO
        0xE8, 0x22, 0x00,       // 15 call getc             ; is < 100 bytes)
        0x88, 0xC5,             // 18 mov ch, al
        0xE8, 0x1D, 0x00,       // 1A call getc
        0x88, 0xC1,             // 1D mov cl, al
        0xE3, 0x05,             // 1F jcxz send
        0xE8, 0x16, 0x00,       // 21 body: call getc
        0xE2, 0xFB,             // 24 loop body
        0xBE, at_lo, at_hi,     // 26 send: mov si, FRAMES_AT
        0xB9, len_lo, len_hi,   // 29 mov cx, len
        0xE3, 0x07,             // 2C jcxz log
        0x2E, 0xAC,             // 2E out: lodsb al, cs:[si]
        0xE8, 0x1F, 0x00,       // 30 call putc
        0xE2, 0xF9,             // 33 loop out
        0xE8, 0x02, 0x00,       // 35 log: call getc
        0xEB, 0xFB,             // 38 jmp log
        0xBA, 0xFD, 0x03,       // 3A getc: mov dx, 0x3FD   ; LSR
        0xEC,                   // 3D wait: in al, dx
        0xA8, 0x01,             // 3E test al, 1            ; data ready
        0x74, 0xFB,             // 40 jz wait
        0xBA, 0xF8, 0x03,       // 42 mov dx, 0x3F8         ; RBR
        0xEC,                   // 45 in al, dx
        0x81, 0xFF, 0x00, 0xF0, // 46 cmp di, 0xF000
        0x73, 0x05,             // 4A jae full
        0xAA,                   // 4C stosb                 ; es:[di++] = al
        0xFF, 0x06, 0x00, 0x06, // 4D inc word [0x600]
        0xC3,                   // 51 full: ret
        0x88, 0xC4,             // 52 putc: mov ah, al
        0xBA, 0xFD, 0x03,       // 54 mov dx, 0x3FD
        0xEC,                   // 57 wait: in al, dx
        0xA8, 0x20,             // 58 test al, 0x20         ; transmitter holding register empty
        0x74, 0xFB,             // 5A jz wait
        0x88, 0xE0,             // 5C mov al, ah
        0xBA, 0xF8, 0x03,       // 5E mov dx, 0x3F8         ; THR
        0xEE,                   // 61 out dx, al
        0xC3,                   // 62 ret
    ];
    let mut fw = vec![0u8; FIRMWARE_BYTES];
    fw[..code.len()].copy_from_slice(&code);
    fw[FRAMES_AT..FRAMES_AT + frames.len()].copy_from_slice(frames);
    // The reset vector (16 bytes from the end): jmp near 0 (IP wraps within segment F000).
    fw[FIRMWARE_BYTES - 16..FIRMWARE_BYTES - 13].copy_from_slice(&[0xE9, 0x0D, 0x00]);
    Some(fw)
}

#[cfg(test)]
#[path = "qemu_msg_tests.rs"]
mod tests;
