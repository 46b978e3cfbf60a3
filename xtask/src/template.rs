//! CloudFormation / SAM templates: the layer's properties (`template.yaml`) and the CodeBuild
//! project's image (`codebuild.yml`), with short tags (`!Ref`, `!Sub`, ...) understood.
//!
//! Intrinsics are resolved only where the answer is known locally: `Ref`/`!Ref` and `!Sub` of
//! parameters that have a `Default`. Anything else is reported as unresolved, never guessed.

use std::sync::Arc;

use crate::diagnostic::{Diagnostic, SourceFile};
use crate::rules;
use crate::yaml::{self, Node, Span};

pub const LAYER_TYPES: &[&str] = &["AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"];

#[derive(Debug)]
pub struct Template {
    pub file: Arc<SourceFile>,
    root: Node,
}

/// A value from the template, resolved or not, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub value: Result<String, String>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub logical_id: String,
    pub span: Span,
    pub layer_name: Option<Resolved>,
    pub description: Option<Resolved>,
    pub license_info: Option<Resolved>,
    pub compatible_runtimes: Vec<Resolved>,
    /// The `CompatibleRuntimes` key, for diagnostics about the list as a whole.
    pub runtimes_span: Option<Span>,
    pub compatible_architectures: Vec<Resolved>,
    pub content_uri: Option<Resolved>,
}

impl Template {
    /// Reads and parses a template; any failure is one diagnostic pointing into the file.
    pub fn read(path: &std::path::Path) -> Result<Template, Diagnostic> {
        let file = SourceFile::read(path).map_err(|e| {
            let unread = SourceFile::new(path.display().to_string(), "");
            let message = format!("cannot read {}: {e}", path.display());
            Diagnostic::new(&rules::TEMPLATE_PROBLEM, message).at(unread.at(Span::default()))
        })?;
        Self::parse(file)
    }

    pub fn parse(file: Arc<SourceFile>) -> Result<Template, Diagnostic> {
        let root = match yaml::parse(&file.text) {
            Ok(mut docs) if !docs.is_empty() => docs.swap_remove(0),
            Ok(_) => {
                let message = format!("{} is empty", file.path);
                return Err(
                    Diagnostic::new(&rules::TEMPLATE_PROBLEM, message).at(file.at(Span::default()))
                );
            }
            Err(e) => {
                let message = format!("{} is not valid YAML: {}", file.path, e.message);
                let span = Span {
                    start: e.pos,
                    end: e.pos,
                };
                return Err(Diagnostic::new(&rules::TEMPLATE_PROBLEM, message).at(file.at(span)));
            }
        };
        if root.get("Resources").and_then(Node::as_map).is_none() {
            let message = format!("{} has no Resources mapping", file.path);
            return Err(Diagnostic::new(&rules::TEMPLATE_PROBLEM, message).at(file.at(root.span)));
        }
        Ok(Template { file, root })
    }

    /// `(logical id, key span, resource node)` for every resource of one of `types`.
    fn resources<'a>(
        &'a self,
        types: &'a [&str],
    ) -> impl Iterator<Item = (&'a str, Span, &'a Node)> {
        let entries = self
            .root
            .get("Resources")
            .and_then(Node::as_map)
            .unwrap_or_default();
        entries.iter().filter_map(move |e| {
            let kind = e.value.get("Type")?.as_str()?;
            types
                .contains(&kind)
                .then(|| (e.key.as_str().unwrap_or_default(), e.key.span, &e.value))
        })
    }

    pub fn layers(&self) -> Vec<Layer> {
        self.resources(LAYER_TYPES)
            .map(|(id, span, node)| {
                let props = node.get("Properties");
                let prop = |key: &str| props.and_then(|p| p.get(key));
                let one = |key: &str| prop(key).map(|n| self.resolve(n));
                let list = |key: &str| {
                    prop(key)
                        .and_then(Node::as_seq)
                        .map(|items| items.iter().map(|n| self.resolve(n)).collect())
                        .unwrap_or_default()
                };
                let runtimes_span = props
                    .and_then(Node::as_map)
                    .and_then(|m| {
                        m.iter()
                            .find(|e| e.key.as_str() == Some("CompatibleRuntimes"))
                    })
                    .map(|e| e.key.span);
                Layer {
                    logical_id: id.to_string(),
                    span,
                    layer_name: one("LayerName"),
                    description: one("Description"),
                    license_info: one("LicenseInfo"),
                    compatible_runtimes: list("CompatibleRuntimes"),
                    runtimes_span,
                    compatible_architectures: list("CompatibleArchitectures"),
                    content_uri: one("ContentUri").or_else(|| one("Content")),
                }
            })
            .collect()
    }

    /// The build images of the CodeBuild projects in this template.
    pub fn codebuild_images(&self) -> Vec<Resolved> {
        self.resources(&["AWS::CodeBuild::Project"])
            .filter_map(|(_, _, node)| node.get("Properties")?.get("Environment")?.get("Image"))
            .map(|n| self.resolve(n))
            .collect()
    }

    /// The `TimeoutInMinutes` of the CodeBuild projects in this template.
    pub fn codebuild_timeouts(&self) -> Vec<Resolved> {
        self.resources(&["AWS::CodeBuild::Project"])
            .filter_map(|(_, _, node)| node.get("Properties")?.get("TimeoutInMinutes"))
            .map(|n| self.resolve(n))
            .collect()
    }

    /// A parameter's default value, if it has one.
    fn parameter_default(&self, name: &str) -> Option<String> {
        let default = self.root.get("Parameters")?.get(name)?.get("Default")?;
        default.as_str().map(str::to_string)
    }

    /// Resolves a scalar, `!Ref`/`{Ref: ...}` of a parameter with a default, or `!Sub`.
    pub fn resolve(&self, node: &Node) -> Resolved {
        let value = self.resolve_value(node);
        Resolved {
            value,
            span: node.span,
        }
    }

    fn resolve_value(&self, node: &Node) -> Result<String, String> {
        let (function, argument) = match (&node.tag, node.as_map()) {
            (Some(tag), _) => (tag.as_str(), node),
            (None, Some([entry])) => match entry.key.as_str() {
                Some(key @ ("Ref" | "Fn::Sub")) => (key, &entry.value),
                Some(other) => return Err(format!("{other} cannot be resolved locally")),
                None => return Err("unexpected mapping".into()),
            },
            (None, _) => {
                return node
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("expected a string, found {}", node.kind()))
            }
        };
        match function {
            "Ref" => {
                let name = argument.as_str().ok_or("Ref needs a name")?;
                self.parameter_default(name)
                    .ok_or_else(|| format!("!Ref {name} is not a parameter with a Default"))
            }
            "Sub" | "Fn::Sub" => {
                let text = argument
                    .as_str()
                    .ok_or("only the one-argument form of !Sub resolves locally")?;
                self.substitute(text)
            }
            other => Err(format!("!{other} cannot be resolved locally")),
        }
    }

    fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or("unterminated ${ in !Sub")?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else {
                let value = self
                    .parameter_default(name)
                    .ok_or_else(|| format!("${{{name}}} is not a parameter with a Default"))?;
                out.push_str(&value);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

impl Resolved {
    pub fn ok(&self) -> Option<&str> {
        self.value.as_deref().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAM: &str = r#"
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  LayerName:
    Type: String
    Default: python-deps
Resources:
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      LayerName: !Ref LayerName
      Description: !Sub '${LayerName} for ${!Literal}'
      ContentUri: python-layer/
      CompatibleRuntimes:
        - python3.9
      CompatibleArchitectures: [x86_64]
      LicenseInfo: MIT
    Metadata:
      BuildMethod: python3.9
Outputs:
  LayerArn:
    Value: !Ref Layer
    Export:
      Name: !Sub '${AWS::StackName}-LayerArn'
"#;

    fn template(text: &str) -> Template {
        Template::parse(SourceFile::new("template.yaml", text)).unwrap()
    }

    #[test]
    fn layer_properties_resolve_parameter_defaults() {
        let layers = template(SAM).layers();
        assert_eq!(layers.len(), 1);
        let layer = &layers[0];
        assert_eq!(layer.logical_id, "Layer");
        assert_eq!(layer.layer_name.as_ref().unwrap().ok(), Some("python-deps"));
        assert_eq!(
            layer.description.as_ref().unwrap().ok(),
            Some("python-deps for ${Literal}")
        );
        assert_eq!(layer.compatible_runtimes[0].ok(), Some("python3.9"));
        assert_eq!(layer.compatible_runtimes[0].span.start.line, 16);
        assert_eq!(layer.compatible_architectures[0].ok(), Some("x86_64"));
    }

    #[test]
    fn unresolvable_intrinsics_are_errors_not_guesses() {
        let t = template("Resources:\n  L:\n    Type: AWS::Lambda::LayerVersion\n    Properties:\n      LayerName: !Sub '${AWS::StackName}-deps'\n      CompatibleRuntimes: !Ref Runtimes\n");
        let layer = &t.layers()[0];
        assert!(layer.layer_name.as_ref().unwrap().value.is_err());
        assert!(layer.compatible_runtimes.is_empty());
    }

    #[test]
    fn long_form_ref_resolves() {
        let t = template("Parameters:\n  N: {Default: x}\nResources:\n  L:\n    Type: AWS::Lambda::LayerVersion\n    Properties:\n      LayerName: {Ref: N}\n");
        assert_eq!(t.layers()[0].layer_name.as_ref().unwrap().ok(), Some("x"));
    }

    #[test]
    fn codebuild_images_are_found() {
        let t = template("Resources:\n  P:\n    Type: AWS::CodeBuild::Project\n    Properties:\n      Environment:\n        Image: public.ecr.aws/sam/build-python3.9\n");
        assert_eq!(
            t.codebuild_images()[0].ok(),
            Some("public.ecr.aws/sam/build-python3.9")
        );
    }

    #[test]
    fn not_a_template_is_one_clear_problem() {
        let err = Template::parse(SourceFile::new("t.yaml", "a: [")).unwrap_err();
        assert!(err.message.contains("not valid YAML"), "{}", err.message);
        assert!(err.location.is_some());
    }
}
