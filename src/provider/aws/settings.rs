//! An AWS provider's section of the providers file, and how it is opened.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::provider::settings::{Planning, Settings};
use crate::provider::{Provider, ProviderError};

/// An AWS account's EC2, in one region. Credentials are read the usual way (the environment,
/// `~/.aws/credentials` and `~/.aws/config` profiles), never from the providers file; a kcli
/// client's own keys (`~/.kcli/config.yml`) are used for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AwsSettings {
    /// The region; default: `$AWS_REGION`, else the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The profile of `~/.aws/config` to use; default: `$AWS_PROFILE`, else `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Another EC2 endpoint than AWS's own for the region (an emulator such as moto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The availability zone the plan's subnets are made in; default: the region's first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// The keys a kcli client of type `aws` holds, used instead of the SDK's chain: never read
    /// from the providers file, never written anywhere.
    #[serde(skip)]
    #[schemars(skip)]
    pub kcli_keys: Option<KcliKeys>,
}

/// A kcli client's AWS keys (`access_key_id`, `access_key_secret`, `session_token`); the
/// secret ones never print.
#[derive(Debug, Clone, PartialEq)]
pub struct KcliKeys {
    pub access_key_id: String,
    pub secret: crate::manifest::model::Secret,
    pub session_token: Option<crate::manifest::model::Secret>,
}

#[async_trait]
impl Settings for AwsSettings {
    fn endpoint(&self) -> String {
        let region = self.region.as_deref().unwrap_or("(the profile's region)");
        match &self.endpoint {
            Some(url) => format!("ec2 {region} at {url}"),
            None => format!("ec2 {region}"),
        }
    }

    fn planning(&self) -> Result<Planning, ProviderError> {
        #[cfg(feature = "aws")]
        return Ok(Planning {
            lower: Box::new(super::lower::lower),
            rules: Box::new(super::rules::AwsRules),
        });
        #[cfg(not(feature = "aws"))]
        Err(crate::provider::settings::not_built("aws", "aws"))
    }

    /// The SDK is async: it connects here.
    async fn open(&self) -> Result<Arc<dyn Provider>, ProviderError> {
        #[cfg(feature = "aws")]
        return Ok(Arc::new(super::AwsProvider::connect(self).await?));
        #[cfg(not(feature = "aws"))]
        Err(crate::provider::settings::not_built("aws", "aws"))
    }
}
