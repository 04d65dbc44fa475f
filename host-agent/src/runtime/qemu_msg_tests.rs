use std::path::Path;

use super::*;

/// [`uart_msg_firmware`]'s `getc` and `putc` routines.
const GETC_AT: usize = 0x3A;
const PUTC_AT: usize = 0x52;

fn args(port: MsgPort, path: &str, ms: bool) -> Vec<String> {
    msg_port_args(port, Path::new(path), ms)
}

#[test]
fn each_port_is_one_chardev_on_the_enclaves_socket() {
    assert!(args(MsgPort::Off, "/d/msg/vm.sock", false).is_empty());
    assert_eq!(
        args(MsgPort::VirtioSerial, "/d/msg/vm.sock", false),
        [
            "-chardev",
            "socket,id=tribune-msg,path=/d/msg/vm.sock,reconnect=1",
            "-device",
            "virtio-serial-pci,id=tribune-msg-bus",
            "-device",
            "virtserialport,bus=tribune-msg-bus.0,chardev=tribune-msg,name=org.tribune.msg.0",
        ]
    );
    assert_eq!(
        args(MsgPort::Uart, "/d/msg/vm.sock", true),
        [
            "-chardev",
            "socket,id=tribune-msg,path=/d/msg/vm.sock,reconnect-ms=1000",
            "-serial",
            "chardev:tribune-msg",
        ]
    );
}

/// A comma in the data dir must not end the path and start an option of the attacker's (or
/// the operator's accident's) choosing.
#[test]
fn commas_in_the_socket_path_are_doubled() {
    let a = args(MsgPort::Uart, "/d,server=on/msg/vm.sock", false);
    assert_eq!(
        a[1],
        "socket,id=tribune-msg,path=/d,,server=on/msg/vm.sock,reconnect=1"
    );
}

#[test]
fn msg_port_is_optional_in_a_spec_and_named_in_snake_case() {
    use crate::plan::LaunchSpec;
    let spec: LaunchSpec = serde_json::from_str(r#"{"qemu":{"memory_mib":64}}"#).unwrap();
    assert!(matches!(
        spec,
        LaunchSpec::Qemu {
            msg_port: MsgPort::VirtioSerial,
            ..
        }
    ));
    // The default is not written, so a spec reads the same to an agent without the field.
    assert_eq!(
        serde_json::to_string(&spec).unwrap(),
        r#"{"qemu":{"memory_mib":64,"args":[]}}"#
    );
    let uart: LaunchSpec =
        serde_json::from_str(r#"{"qemu":{"memory_mib":64,"msg_port":"uart"}}"#).unwrap();
    assert!(matches!(
        uart,
        LaunchSpec::Qemu {
            msg_port: MsgPort::Uart,
            ..
        }
    ));
    assert!(
        serde_json::from_str::<LaunchSpec>(r#"{"qemu":{"msg_port":"vsock"}}"#).is_err(),
        "an unknown port is refused, not ignored"
    );
}

/// The target of the `E8 rel16` call at `at`.
fn call_target(fw: &[u8], at: usize) -> usize {
    assert_eq!(fw[at], 0xE8, "a call at {at:#x}");
    let rel = i16::from_le_bytes([fw[at + 1], fw[at + 2]]);
    (at as isize + 3 + rel as isize) as usize
}

/// The target of the short jump (`EB`, `74`, `73`, `E2`, `E3` rel8) at `at`.
fn short_target(fw: &[u8], at: usize) -> usize {
    (at as isize + 2 + fw[at + 1] as i8 as isize) as usize
}

#[test]
fn uart_firmware_reads_a_frame_writes_the_frames_then_logs_what_it_reads() {
    let frames = b"\x00\x00\x00\x06\x01\x02\x00\x00\x00\x01";
    let fw = uart_msg_firmware(frames).unwrap();
    assert_eq!(fw.len(), 64 * 1024);
    // The reset vector jumps to 0.
    assert_eq!(&fw[0xFFF0..0xFFF3], &[0xE9, 0x0D, 0x00]);
    assert_eq!(0xFFF3u16.wrapping_add(0x000D), 0);
    // The frames sit where `mov si` and `mov cx` say.
    assert_eq!(&fw[0x26..0x29], &[0xBE, 0x00, 0x01]);
    assert_eq!(&fw[0x29..0x2C], &[0xB9, frames.len() as u8, 0]);
    assert_eq!(&fw[FRAMES_AT..FRAMES_AT + frames.len()], frames);
    // Every call lands on getc or putc, every jump where its comment says.
    for at in [0x0F, 0x12, 0x15, 0x1A, 0x21, 0x35] {
        assert_eq!(call_target(&fw, at), GETC_AT, "call at {at:#x}");
    }
    assert_eq!(call_target(&fw, 0x30), PUTC_AT);
    assert_eq!(short_target(&fw, 0x1F), 0x26, "jcxz send");
    assert_eq!(short_target(&fw, 0x24), 0x21, "loop body");
    assert_eq!(short_target(&fw, 0x2C), 0x35, "jcxz log");
    assert_eq!(short_target(&fw, 0x33), 0x2E, "loop out");
    assert_eq!(short_target(&fw, 0x38), 0x35, "jmp log");
    assert_eq!(short_target(&fw, 0x40), 0x3D, "getc: wait for data");
    assert_eq!(short_target(&fw, 0x4A), 0x51, "log full");
    assert_eq!(short_target(&fw, 0x5A), 0x57, "putc: wait for the THR");
    assert_eq!(
        (fw[0x51], fw[CODE_BYTES - 1]),
        (0xC3, 0xC3),
        "both routines return"
    );
    // The log and its count are where the host reads them.
    assert_eq!(&fw[0x0C..0x0F], &[0xBF, 0x00, 0x10]);
    assert_eq!(UART_LOG_ADDR, 0x1000);
    assert_eq!(&fw[0x46..0x4A], &[0x81, 0xFF, 0x00, 0xF0]);
    assert_eq!(UART_LOG_ADDR as usize + UART_LOG_BYTES_MAX, 0xF000);
    assert_eq!(&fw[0x4D..0x51], &[0xFF, 0x06, 0x00, 0x06]);
    assert_eq!(UART_COUNT_ADDR, 0x600);
}

#[test]
fn uart_firmware_refuses_frames_that_do_not_fit() {
    assert!(uart_msg_firmware(&[]).is_some());
    assert!(uart_msg_firmware(&vec![0; 64 * 1024 - 16 - FRAMES_AT]).is_some());
    assert!(uart_msg_firmware(&vec![0; 64 * 1024 - 16 - FRAMES_AT + 1]).is_none());
}
