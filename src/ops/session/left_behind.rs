//! What a destroy finds of the plan on providers it no longer names.

use std::time::Duration;

use super::*;

impl Session {
    /// For `destroy`: what the plan left on providers it no longer names (a VM's `client:`
    /// removed, another default provider). Every enabled provider of the providers file is
    /// searched for the plan's marks (at most 10 s each); each that holds any joins the run as
    /// a part of its own, said first, so that destroy lists and deletes what is there too. With
    /// no providers file there is nothing more to search.
    pub async fn add_providers_left_behind(&mut self, view: &dyn View) {
        let Ok((file, registry::config::Found::File(_))) = registry::config::load() else {
            return;
        };
        let searched: Vec<_> = file
            .providers
            .into_iter()
            .filter(|p| p.enabled)
            .filter(|p| {
                !self.sites.iter().any(|s| {
                    s.opened.name.as_deref() == Some(p.name.as_str())
                        || s.opened.provider.endpoint() == p.endpoint()
                })
            })
            .collect();
        let plan = self.name.clone();
        // Where the run already goes, as the providers opened say it (two names, or two
        // kubeconfigs, may lead to one place).
        let here: Vec<String> = self
            .sites
            .iter()
            .map(|s| s.opened.provider.endpoint())
            .collect();
        let asking = searched.into_iter().map(|config| {
            let plan = plan.clone();
            let here = &here;
            async move {
                let found = tokio::time::timeout(Duration::from_secs(10), async {
                    let provider = backends::open(&config.backend).await?;
                    if here.contains(&provider.endpoint()) {
                        return Ok((provider, 0));
                    }
                    let scope = Scope {
                        plan: plan.clone(),
                        ids: Vec::new(),
                    };
                    let held = provider.observe(&scope).await?.owned_by(&plan).count();
                    Ok::<_, crate::provider::ProviderError>((provider, held))
                })
                .await;
                (config, found)
            }
        });
        let mut added = false;
        for (config, found) in futures::future::join_all(asking).await {
            match found {
                Ok(Ok((_, 0))) => {}
                Ok(Ok((provider, held))) => {
                    // A host of the group the plan goes to is where its VMs were placed: no
                    // surprise there.
                    if !self.group_hosts.contains(&config.name) {
                        view.event(Event::Warning(format!(
                            "provider `{}` holds {held} resource{} of plan `{plan}`, though the \
                             plan no longer names it: destroyed with the rest",
                            config.name,
                            if held == 1 { "" } else { "s" }
                        )));
                    }
                    self.sites.push(Site {
                        label: Some(config.name.clone()),
                        opened: Opened {
                            provider,
                            parallelism: config.parallelism,
                            name: Some(config.name.clone()),
                        },
                        desired: Desired::default().nothing_but_leftovers(),
                        guests: Vec::new(),
                    });
                    added = true;
                }
                Ok(Err(e)) => view.event(Event::Warning(format!(
                    "provider `{}` could not be searched for what plan `{plan}` left there: {e}",
                    config.name
                ))),
                Err(_) => view.event(Event::Warning(format!(
                    "provider `{}` could not be searched for what plan `{plan}` left there: no \
                     answer within 10 s",
                    config.name
                ))),
            }
        }
        // Several parts: each change says on which provider it is.
        if added {
            for site in &mut self.sites {
                if site.label.is_none() {
                    site.label = Some(site.shown());
                }
            }
        }
    }
}
