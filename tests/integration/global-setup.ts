import { assertStackUp } from './stack';

export default async function globalSetup(): Promise<void> {
  await assertStackUp();
}
