//! What the cluster offers to place VMs on: its nodes' allocatable CPUs and memory.

use k8s_openapi::api::core::v1::Node;

use super::*;

#[async_trait]
impl capability::Placement for KubevirtProvider {
    /// The nodes' allocatable CPUs and memory, summed (one LIST); `None` for a cluster whose
    /// nodes report none (or that has none).
    async fn capacity(&self) -> Result<Option<capability::Capacity>, ProviderError> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| ProviderError::Connection(format!("listing nodes: {}", Said(&e))))?;
        let mut total = capability::Capacity {
            cpus: 0,
            memory_bytes: 0,
        };
        let mut counted = false;
        for node in nodes {
            let Some(allocatable) = node.status.and_then(|s| s.allocatable) else {
                continue;
            };
            if let Some(cpu) = allocatable.get("cpu") {
                // Whole CPUs: `4`, or `3500m` (millicores) counted down.
                total.cpus += cpu.0.strip_suffix('m').map_or_else(
                    || cpu.0.parse().unwrap_or(0),
                    |milli| milli.parse::<u64>().unwrap_or(0) / 1000,
                );
                counted = true;
            }
            if let Some(memory) = allocatable.get("memory") {
                total.memory_bytes += bytes(&memory.0).unwrap_or(0);
                counted = true;
            }
        }
        Ok(counted.then_some(total))
    }
}

/// A Kubernetes memory quantity (`16Gi`, `16426052Ki`, `17179869184`, `16G`) in bytes.
fn bytes(quantity: &str) -> Option<u64> {
    let split = quantity
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(quantity.len());
    let (digits, unit) = quantity.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_quantities_are_read_in_bytes() {
        assert_eq!(super::bytes("16Gi"), Some(16 << 30));
        assert_eq!(super::bytes("16426052Ki"), Some(16426052 << 10));
        assert_eq!(super::bytes("1000"), Some(1000));
        assert_eq!(super::bytes("2G"), Some(2_000_000_000));
        assert_eq!(super::bytes("1.5Gi"), None);
    }
}
