"""The marketers' nurture YAML: read, check every key, and turn into `NurtureRules`.

Every problem in a file is collected before anything is raised, so a marketer fixes a file in one
pass instead of one error per run. Each message names the file, the line, the key path, the bad
value and what is allowed there.

- `yaml_reader`: the YAML itself (syntax, duplicate keys) and where each problem is;
- `values`: checks of single values; `sections`: one table per section, read by one function;
- `loading`: the file from disk, validated whole;
- `store`: `RulesStore` keeps a running process's rules fresh, re-reading the file at most every
  N seconds and swapping in a new version only when the whole file is valid; `RedisLastGood`
  keeps the last valid text for processes that start while the file is broken.
"""

from handoff_worker.nurture_config.document import SUPPORTED_VERSION
from handoff_worker.nurture_config.loading import content_version, load_rules, parse_rules, read_config_text
from handoff_worker.nurture_config.sections import TASK_SUBJECT_PLACEHOLDERS
from handoff_worker.nurture_config.store import LastGoodText, RedisLastGood, RulesStore
from handoff_worker.nurture_config.values import STANDARD_LIFECYCLE_STAGES

__all__ = [
    "STANDARD_LIFECYCLE_STAGES",
    "SUPPORTED_VERSION",
    "TASK_SUBJECT_PLACEHOLDERS",
    "LastGoodText",
    "RedisLastGood",
    "RulesStore",
    "content_version",
    "load_rules",
    "parse_rules",
    "read_config_text",
]
