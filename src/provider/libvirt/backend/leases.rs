//! A network's DHCP leases (`virNetworkGetDHCPLeases`), which the `virt` crate has no call
//! for. A VM on one host of a network that spans hosts holds its lease from the network's
//! home, another host: its own host cannot say it (`Placement::leases`).

use std::ffi::CStr;
use std::net::IpAddr;

use virt::sys;

/// Each lease of `net`: the MAC that holds it, and its address.
pub(super) fn of(net: &virt::network::Network) -> Result<Vec<(String, IpAddr)>, String> {
    let mut leases: *mut sys::virNetworkDHCPLeasePtr = std::ptr::null_mut();
    // SAFETY: `net` holds a live network pointer for this call; libvirt fills `leases` with
    // an array it allocated, of as many leases as it returns.
    let count =
        unsafe { sys::virNetworkGetDHCPLeases(net.as_ptr(), std::ptr::null(), &mut leases, 0) };
    if count < 0 {
        return Err(virt::error::Error::last_error().message().to_string());
    }
    let text = |p: *mut std::os::raw::c_char| -> Option<String> {
        // SAFETY: a field libvirt set is NULL or a NUL-terminated string it owns until the
        // lease is freed below.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let mut found = Vec::new();
    for i in 0..usize::try_from(count).unwrap_or(0) {
        // SAFETY: `i` is within the array libvirt returned; each lease is read, then freed
        // once.
        unsafe {
            let lease = *leases.add(i);
            if lease.is_null() {
                continue;
            }
            let (mac, ip) = (text((*lease).mac), text((*lease).ipaddr));
            sys::virNetworkDHCPLeaseFree(lease);
            if let (Some(mac), Some(Ok(ip))) = (mac, ip.map(|ip| ip.parse::<IpAddr>())) {
                found.push((mac.to_ascii_lowercase(), ip));
            }
        }
    }
    if !leases.is_null() {
        // SAFETY: the array itself, allocated by libvirt with malloc, freed once.
        unsafe { libc::free(leases.cast()) };
    }
    Ok(found)
}
