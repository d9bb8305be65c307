"""Empirical privacy audits, per group: membership inference and a one-run epsilon lower bound.

``disparate audit EXPERIMENT`` (:mod:`disparate.commands.audit`) and :func:`run_audit`;
see ``docs/audit.md``.
"""

from disparate.audit.canaries import AuditData, build_audit_data
from disparate.audit.mia import attack_metrics, lira_offline_scores, roc_auc, tpr_at_fpr
from disparate.audit.one_run import OneRunBound, audit_scores, epsilon_lower_bound, p_value
from disparate.audit.runner import AUDIT_FILE, AuditOptions, run_audit

__all__ = [
    "AUDIT_FILE",
    "AuditData",
    "AuditOptions",
    "OneRunBound",
    "attack_metrics",
    "audit_scores",
    "build_audit_data",
    "epsilon_lower_bound",
    "lira_offline_scores",
    "p_value",
    "roc_auc",
    "run_audit",
    "tpr_at_fpr",
]
