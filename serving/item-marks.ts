/**
 * A set of item indices that costs nothing per request: one stamp per item, and a generation number that moves on
 * with each request instead of clearing the array. Used synchronously (begin, mark, test) within one request turn;
 * never held across an await, since another request would start a new generation.
 */
export class ItemMarks {
  private stamps: Uint32Array;
  private generation = 0;

  constructor(nItems: number) {
    this.stamps = new Uint32Array(nItems + 1);
  }

  /** Empties the set. */
  begin(): void {
    this.generation++;
    if (this.generation === 0xffffffff) {
      this.stamps.fill(0);
      this.generation = 1;
    }
  }

  /** Adds an index; 0 (unknown item) and out-of-range indices are ignored. */
  mark(index: number): void {
    if (index > 0 && index < this.stamps.length) this.stamps[index] = this.generation;
  }

  has(index: number): boolean {
    return this.stamps[index] === this.generation;
  }
}
