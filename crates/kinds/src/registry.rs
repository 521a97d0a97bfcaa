//! The macro that turns the registration list of `lib.rs` into the kind
//! enum, the wire enum, the list of names, the dispatch and the schema.

macro_rules! register {
    ($($module:ident :: $spec:ident as $variant:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// The closed set of stage kinds, with each stage's validated spec.
        /// Serialized (in job files) with its `kind` name as the tag.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum StageKind {
            $($variant(Box<$module::$spec>),)*
        }

        /// A stage table's own keys, read by the kind that `kind` names.
        pub enum KindWire {
            $($variant(Box<<$module::$spec as $crate::api::Kind>::Wire>),)*
        }

        /// Every kind's name, in registration order.
        pub const KINDS: &[&str] = &[$(<$module::$spec as $crate::api::Kind>::NAME,)*];

        impl KindWire {
            /// Reads the own keys of a stage of kind `kind`; `None` for an
            /// unknown kind.
            pub fn parse<S: $crate::api::WireSource>(
                kind: &str,
                source: &mut S,
            ) -> Option<Result<KindWire, S::Error>> {
                $(
                    if kind == <$module::$spec as $crate::api::Kind>::NAME {
                        let wire = <<$module::$spec as $crate::api::Kind>::Wire as $crate::api::FromStage>::from_stage(source);
                        return Some(wire.map(|w| KindWire::$variant(Box::new(w))));
                    }
                )*
                None
            }

            pub fn validate(self, settings: &mut $crate::api::Settings<'_>) -> StageKind {
                match self {
                    $(KindWire::$variant(w) => {
                        StageKind::$variant(Box::new(<$module::$spec as $crate::api::Kind>::validate(*w, settings)))
                    })*
                }
            }
        }

        impl StageKind {
            pub fn name(&self) -> &'static str {
                match self { $(StageKind::$variant(_) => <$module::$spec as $crate::api::Kind>::NAME,)* }
            }

            pub fn impl_version(&self) -> u32 {
                match self { $(StageKind::$variant(_) => <$module::$spec as $crate::api::Kind>::VERSION,)* }
            }

            pub fn definition(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
                match self { $(StageKind::$variant(k) => $crate::api::Kind::definition(k.as_ref()),)* }
            }

            pub fn execute(&self, job: &$crate::Job, shard: &$crate::ShardRun) -> Result<(), $crate::StageError> {
                match self { $(StageKind::$variant(k) => $crate::api::Kind::execute(k.as_ref(), job, shard),)* }
            }

            pub fn stats(
                &self,
                shards: &[std::path::PathBuf],
            ) -> Result<std::collections::BTreeMap<String, serde_json::Value>, $crate::StageError> {
                match self { $(StageKind::$variant(k) => $crate::api::Kind::stats(k.as_ref(), shards),)* }
            }

            /// The stats that are the kind's headline figures.
            pub fn headline(&self) -> &'static [&'static str] {
                match self { $(StageKind::$variant(_) => <$module::$spec as $crate::api::Kind>::HEADLINE,)* }
            }

            /// What the run's `done` line adds, from the output's stats.
            pub fn summary(&self, stats: &std::collections::BTreeMap<String, serde_json::Value>) -> Option<String> {
                match self { $(StageKind::$variant(k) => $crate::api::Kind::summary(k.as_ref(), stats),)* }
            }

            /// The inference server the stage's job starts, if any.
            pub fn serve(&self) -> Option<&swestar_vocab::serve::Serve> {
                match self { $(StageKind::$variant(k) => $crate::api::Kind::serve(k.as_ref()),)* }
            }

            /// What the stage body launches across its SLURM allocation.
            pub fn allocation_launch(&self, stage_dir: &std::path::Path) -> Option<String> {
                match self {
                    $(StageKind::$variant(k) => $crate::api::Kind::allocation_launch(k.as_ref(), stage_dir),)*
                }
            }
        }

        /// Schema-only view of a stage table: `kind` selects the variant.
        #[derive(schemars::JsonSchema)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        #[allow(dead_code, clippy::large_enum_variant)]
        pub enum StageSchema {
            $($variant($crate::api::StageTable<<$module::$spec as $crate::api::Kind>::Wire>),)*
        }

        #[cfg(test)]
        mod registration {
            use super::*;

            /// The serde tag of each variant is the kind's own name.
            #[test]
            fn tags_are_the_kinds_names() {
                $(
                    let tag = serde_json::to_value(StageKindTag::$variant).unwrap();
                    assert_eq!(tag, serde_json::json!(<$module::$spec as $crate::api::Kind>::NAME));
                )*
            }

            #[derive(serde::Serialize)]
            #[serde(rename_all = "snake_case")]
            enum StageKindTag { $($variant,)* }
        }
    };
}

pub(crate) use register;
