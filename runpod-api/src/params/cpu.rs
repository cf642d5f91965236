//! Query parameters of the CPU catalog (`GET /v2/catalog/cpus[/{id}]`).

use crate::models::CpuProduct;

/// Filters of the CPU catalog. Availability, and the vCPU count it is computed for, need
/// [`CpuCatalogParams::availability`], which also names the product contexts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CpuCatalogParams {
    /// Product contexts of the availability to include; empty means availability is not asked.
    pub availability_for: Vec<CpuProduct>,
    /// vCPU count the availability is computed for (a power of two, at least 2).
    pub vcpu_count: Option<u32>,
}

impl CpuCatalogParams {
    /// Asks for availability in the given product contexts (such as [`CpuProduct::Pod`]).
    #[must_use]
    pub fn availability(mut self, products: impl IntoIterator<Item = CpuProduct>) -> Self {
        self.availability_for = products.into_iter().collect();
        self
    }

    /// Computes availability for instances of `vcpu_count` vCPUs.
    #[must_use]
    pub fn vcpu_count(mut self, vcpu_count: u32) -> Self {
        self.vcpu_count = Some(vcpu_count);
        self
    }

    /// Checks the spec's rules for `include`, `product` and `vcpuCount` (parameters
    /// `CatalogIncludeParam`, `CpuProductFilter`, `CpuVCPUCountFilter`).
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(count) = self.vcpu_count {
            if self.availability_for.is_empty() {
                return Err(
                    "`vcpuCount` is valid only with availability(...) and a product context".into(),
                );
            }
            if count < 2 || !count.is_power_of_two() {
                return Err(format!(
                    "`vcpuCount` must be a power of two, at least 2, not {count}"
                ));
            }
        }
        if let Some(CpuProduct::Unknown(other)) = self
            .availability_for
            .iter()
            .find(|product| matches!(product, CpuProduct::Unknown(_)))
        {
            return Err(format!("`product` {other:?} is not one of POD, SERVERLESS"));
        }
        Ok(())
    }

    pub(crate) fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if !self.availability_for.is_empty() {
            query.push(("include", "AVAILABILITY".to_owned()));
            let products: Vec<&str> = self
                .availability_for
                .iter()
                .map(CpuProduct::as_str)
                .collect();
            query.push(("product", products.join(",")));
        }
        if let Some(count) = self.vcpu_count {
            query.push(("vcpuCount", count.to_string()));
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_and_vcpu_count_rules() {
        assert_eq!(CpuCatalogParams::default().to_query(), vec![]);
        let full = CpuCatalogParams::default()
            .availability([CpuProduct::Pod, CpuProduct::Serverless])
            .vcpu_count(4);
        assert_eq!(full.check(), Ok(()));
        assert_eq!(
            full.to_query(),
            vec![
                ("include", "AVAILABILITY".to_owned()),
                ("product", "POD,SERVERLESS".to_owned()),
                ("vcpuCount", "4".to_owned()),
            ]
        );
        assert!(CpuCatalogParams::default().vcpu_count(4).check().is_err());
        let odd = CpuCatalogParams::default()
            .availability([CpuProduct::Pod])
            .vcpu_count(6);
        assert!(odd.check().is_err());
    }
}
