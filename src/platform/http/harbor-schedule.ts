/**
 * Harbor's shape for the schedule of a system job (GC, audit purge …): GET …/schedule answers it
 * the same way for every kind, with only the job name and the parameters differing.
 */
import { badRequest } from './api.ts';

export interface ScheduleView<P> {
  readonly type: string;
  readonly cron: string;
  readonly nextRunAt: number | null;
  readonly parameters: P;
  readonly createdAt: number | null;
  readonly updatedAt: number | null;
}

export function harborScheduleJson<P extends object>(jobName: string, schedule: ScheduleView<P>) {
  return {
    id: 0,
    job_name: jobName,
    job_kind: schedule.type === 'None' ? '' : 'SCHEDULE',
    job_parameters: JSON.stringify(schedule.parameters),
    schedule: { type: schedule.type, cron: schedule.cron, ...(schedule.nextRunAt !== null ? { next_scheduled_time: new Date(schedule.nextRunAt).toISOString() } : {}) },
    parameters: { ...schedule.parameters },
    job_status: '',
    deleted: false,
    ...(schedule.createdAt !== null ? { creation_time: new Date(schedule.createdAt).toISOString() } : {}),
    ...(schedule.updatedAt !== null ? { update_time: new Date(schedule.updatedAt).toISOString() } : {}),
  };
}

/** A numeric id from a path parameter (`gc_id`, `purge_id` …), or a 400 naming the parameter. */
export function numericPathId(raw: string, name: string): number {
  if (!/^[0-9]{1,15}$/.test(raw)) throw badRequest(`${name} must be a positive whole number, got "${raw}"`);
  return Number(raw);
}
