/** The shape of `pgbisync doctor`'s report: one result per check and node, with the fix. */

export type CheckStatus = 'ok' | 'FAIL' | 'warn';

export interface DoctorCheck {
  /** Node name, or `kafka`. */
  readonly node: string;
  readonly check: string;
  readonly status: CheckStatus;
  readonly detail: string;
  /** The statement or command that fixes a FAIL/warn; null when there is nothing to do. */
  readonly fix: string | null;
}

export interface DoctorReport {
  /** False when any check FAILed (warnings do not fail). */
  readonly ok: boolean;
  readonly checks: readonly DoctorCheck[];
}

/** Records one check result of a node. */
export type Emit = (check: string, status: CheckStatus, detail: string, fix?: string) => void;
