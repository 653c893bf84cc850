/**
 * scheduledRetrain with mocked activities on the time-skipping test server: it starts the model's one retrain
 * (`retrain-<model>`, trigger schedule) and waits for it; a gate rejection completes it normally (a schedule pauses
 * on failures only); a failed training fails it.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { scheduledRetrain } from '../../workflows';
import { fatal, uniqueId, useWorkflowTestEnv, type MockActivities } from './harness';
import { trainingActivities, VERSION } from './training-mocks';

const t = useWorkflowTestEnv();

const planned = (model: string) => ({
  recipe: {
    dataset: { name: 'ml-test', sources: ['s3://recsys/raw/a.tsv'], etl: { format: 'tsv' } },
    autoRollout: false,
  },
  basedOn: { championVersion: '6', datasetVersion: 'aaa', recipeUri: `s3://recsys/recipes/${model}.json` },
  feedback: { rows: 0, fromMs: 1, toMs: 2 },
});

async function run(mocks: (model: string) => MockActivities) {
  const model = uniqueId('m');
  const { taskQueue, calls } = await t.worker({ planRetrain: () => planned(model), ...mocks(model) });
  const handle = await t.env().client.workflow.start(scheduledRetrain, {
    taskQueue,
    workflowId: `scheduled-retrain-${model}-2026-12-01T00:00:00Z`,
    args: [{ model }],
  });
  return { handle, calls, model, taskQueue };
}

describe('scheduledRetrain workflow (mocked activities, time skipping)', () => {
  test('starts retrain-<model> with trigger schedule and returns its outcome (a gate rejection is not a failure)', async () => {
    const { handle, model, calls } = await run(() =>
      trainingActivities(
        { data: false, model: false },
        { checkGates: () => ({ passed: false, summary: 'worse than the champion', results: [] }) },
      ),
    );
    const result = await handle.result();
    expect(result).toEqual({
      outcome: 'trained',
      retrainWorkflowId: `retrain-${model}`,
      training: { outcome: 'rejected', modelVersion: VERSION, datasetVersion: 'd41d8cd98f00' },
    });
    const retrain = await t.env().client.workflow.getHandle(`retrain-${model}`).describe();
    expect(retrain.type).toBe('continuousTraining');
    expect(retrain.searchAttributes.RecsysTrigger).toEqual(['schedule']);
    expect(calls.find((c) => c.name === 'register')?.input.cause).toEqual({ requestedBy: handle.workflowId });
  });

  test('a failed training fails the scheduled run (so the schedule can pause on failure)', async () => {
    const { handle } = await run(() =>
      trainingActivities(
        { data: false, model: false },
        { etl: () => Promise.reject(fatal('source gone', 'SourceNotFound')) },
      ),
    );
    await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
  });
  // A retrain already running absorbing a scheduled run needs Temporal to refuse a child start, which the time-skipping
  // test server mishandles (it leaks its lock): tests/integration/drift-loop.test.ts proves it on the real server.
});
